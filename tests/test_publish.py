"""`selfguide run` and the quality gate, and the serving files of a published adapter.

The work directory is filled with the records completed stages leave (as in tests/test_runner.py), so the real
CLI finds every stage complete and only decides: exit code 4 and no serving files when the model missed the
gate, exit code 0 and ready-to-use serving files when it passed."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from selfguide.artifacts import atomic_write_json
from selfguide.contract.errors import ExitCode
from selfguide.contract.layout import RECORD_FILE
from selfguide.contract.record import StageRecord
from selfguide.contract.registry import stages_for
from selfguide.contract.results import EvaluateResult, Metric, StageResult, judge
from selfguide.contract.serving import max_lora_rank, vllm_command
from selfguide.runner import stage_hash
from selfguide.spec import SelfGuideJob, SelfGuideJobSpec
from tests import manifests
from tests.operator.fake_stage import RESULTS
from tests.stage_runs import run_cli, write_manifest

GATE = {"examples": [{"input": "x y", "output": "y x"}], "gate": {"minImprovement": 5}}


def complete(job: SelfGuideJob, workdir: Path, baseline: float, finetuned: float) -> None:
    """Leave the records (and main artifacts) of a job whose every stage completed with this spec."""
    spec = job.spec
    records: dict[str, str] = {}
    for definition in stages_for(spec):
        result: StageResult = RESULTS[definition.name]
        if definition.name == "evaluate":
            assert spec.evaluation is not None and spec.evaluation.gate is not None
            result = EvaluateResult(metric=Metric.ROUGE_L, examples=1, baseline=baseline, finetuned=finetuned,
                                    delta=finetuned - baseline,
                                    gate=judge(spec.evaluation.gate.min_improvement, [baseline], [finetuned]))
        upstream = {name: records[name] for name in definition.after}
        record = StageRecord(stage=definition.name, config_hash=stage_hash(spec, definition.name, upstream),
                             upstream=upstream, selfguide_version=__import__("selfguide").__version__,
                             started_at=datetime.now(UTC), finished_at=datetime.now(UTC), seconds=1.0,
                             summary=result.model_dump(mode="json", by_alias=True))
        atomic_write_json(workdir / definition.name / RECORD_FILE, record.model_dump(mode="json", by_alias=True))
        (workdir / definition.artifact(spec)).mkdir(parents=True, exist_ok=True)
        records[definition.name] = record.record_hash


def gated_job(tmp_path: Path, **training) -> tuple[Path, SelfGuideJob]:
    document = manifests.generation()
    document["spec"]["evaluation"] = GATE
    if training:
        document["spec"]["training"] = training
    return write_manifest(tmp_path / "job.yaml", document), SelfGuideJob.model_validate(document)


def test_run_exits_with_the_quality_gate_code_and_publishes_nothing_when_the_model_loses(tmp_path):
    manifest, job = gated_job(tmp_path)
    workdir = tmp_path / "work"
    complete(job, workdir, baseline=50, finetuned=52)
    (workdir / "serving").mkdir()  # left by an earlier run that passed: must not survive this verdict
    result = run_cli("run", manifest, "--workdir", workdir)
    assert result.returncode == ExitCode.QUALITY_GATE == 4, result.stdout + result.stderr
    assert "quality gate failed: SELF-GUIDE 52.00 vs few-shot prompting 50.00" in result.stderr
    assert not (workdir / "serving").exists()
    assert (workdir / "train" / "adapter").is_dir() and (workdir / "evaluate" / "record.json").is_file()


def test_run_publishes_serving_files_when_the_model_wins(tmp_path):
    manifest, job = gated_job(tmp_path, lora={"r": 32})
    workdir = tmp_path / "work"
    complete(job, workdir, baseline=50, finetuned=60)
    result = run_cli("run", manifest, "--workdir", workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "quality gate passed" in result.stdout
    serving = workdir / "serving"
    adapter = str((workdir / "train" / "adapter").absolute())
    command = shlex.split((serving / "vllm-serve.sh").read_text().splitlines()[-1])
    assert command[:6] == ["exec", "python3", "-m", "vllm.entrypoints.openai.api_server", "--model",
                           "HuggingFaceTB/SmolLM2-135M-Instruct"]
    assert command[-1] == "$@"  # the script's own arguments go to the server
    assert "--enable-lora" in command and command[command.index("--lora-modules") + 1] == f"reverse-words={adapter}"
    assert command[command.index("--max-lora-rank") + 1] == "32"
    adapter_manifest = yaml.safe_load((serving / "modeladapter.yaml").read_text())
    assert adapter_manifest["kind"] == "ModelAdapter" and adapter_manifest["spec"]["artifactURL"] == adapter
    assert adapter_manifest["spec"]["baseModel"] == "smollm2-135m-instruct"
    assert adapter_manifest["spec"]["podSelector"] == {"matchLabels": {"model.aibrix.ai/name": "smollm2-135m-instruct"}}
    assert json.loads((serving / "serving.json").read_text())["loraRank"] == 32


@pytest.mark.parametrize(("rank", "flag"), [(8, None), (16, None), (17, 32), (64, 64), (300, 320)])
def test_max_lora_rank_is_given_only_above_vllms_default(rank, flag):
    assert max_lora_rank(rank) == flag
    spec = SelfGuideJobSpec.model_validate({"task": manifests.generation()["spec"]["task"],
                                            "training": {"lora": {"r": rank}}})
    command = vllm_command(spec, "a", "/adapter")
    assert ("--max-lora-rank" in command) == (flag is not None)
