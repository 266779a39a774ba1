"""The stage runner's bookkeeping: stage hashes, chained records, skipping, the work-directory lock.

Stage records are written here directly (what a completed stage leaves), so these tests need no model; the
slow tests in tests/stages/ run the same paths with the real stages."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from selfguide.artifacts import atomic_write_json
from selfguide.contract.confighash import spec_sections, stage_hash
from selfguide.contract.errors import RetryableError
from selfguide.contract.layout import RECORD_FILE
from selfguide.contract.record import StageRecord, read_record
from selfguide.contract.registry import stage, stage_names, stages_for
from selfguide.contract.results import GenerateResult
from selfguide.runner import completed_record, current_hash, run_stage, workdir_lock
from selfguide.spec import SelfGuideJobSpec
from tests import manifests

EVALUATION = {"examples": [{"input": "x y", "output": "y x"}]}
UPSTREAM = {"generate": "0123456789abcdef"}


def spec(**changes) -> SelfGuideJobSpec:
    return SelfGuideJobSpec.model_validate({"task": manifests.generation()["spec"]["task"]} | changes)


def own_hashes(s: SelfGuideJobSpec) -> dict[str, str]:
    """Each stage's hash with fixed upstream records: what the spec alone contributes."""
    return {name: stage_hash(s, name, {up: UPSTREAM["generate"] for up in stage(name).after}) for name in stage_names()}


def test_same_spec_same_hash():
    assert own_hashes(spec()) == own_hashes(spec())
    assert len(set(own_hashes(spec()).values())) == 3


def test_training_changes_only_the_stages_that_read_it():
    before, after = own_hashes(spec()), own_hashes(spec(training={"epochs": 1}))
    assert after["generate"] == before["generate"]
    assert after["train"] != before["train"] and after["evaluate"] != before["evaluate"]


def test_evaluation_changes_only_the_evaluate_stage():
    before, after = own_hashes(spec(evaluation=EVALUATION)), own_hashes(spec(evaluation=EVALUATION | {"maxNewTokens": 9}))
    assert (after["generate"], after["train"]) == (before["generate"], before["train"])
    assert after["evaluate"] != before["evaluate"]


def test_upstream_records_chain_into_the_hash():
    s = spec()
    assert stage_hash(s, "train", {"generate": "0" * 16}) != stage_hash(s, "train", {"generate": "1" * 16})


@pytest.mark.parametrize(
    "changes",
    [
        {"pod": {"image": "registry.example/selfguide:2", "nodeSelector": {"gpu": "h100"}}},
        {"stages": {"generate": {"backoffLimit": 4, "resources": {"limits": {"nvidia.com/gpu": "1"}}}}},
        {"suspend": True},
        {"activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 60},
        {"output": {"claimName": "other-claim"}},
        {"modelCache": {"claimName": "hf-cache"}},
        {"training": {"gradientCheckpointing": True}},
        {"generation": {"tensorParallelSize": 2}},
    ],
)
def test_cluster_and_memory_settings_change_no_hash(changes):
    assert own_hashes(spec(**changes)) == own_hashes(spec())


def test_a_stage_hash_covers_only_what_the_stage_reads():
    assert set(spec_sections(spec(), "generate")) == {"task", "model", "generation"}
    assert set(spec_sections(spec(), "train")) == {"task", "model", "training"}
    assert spec_sections(spec(), "evaluate")["evaluation"] is None


def test_stages_for():
    assert [d.name for d in stages_for(spec())] == ["generate", "train"]
    assert [d.name for d in stages_for(spec(evaluation=EVALUATION))] == ["generate", "train", "evaluate"]


def record(workdir: Path, name: str, s: SelfGuideJobSpec, summary: dict | None = None) -> StageRecord:
    """Leave what a completed stage leaves: its record, hashed against the upstream records as they are."""
    upstream = {up: r.record_hash for up in stage(name).after if (r := read_record(workdir / up))}
    now = datetime.now(UTC)
    written = StageRecord(stage=name, config_hash=stage_hash(s, name, upstream), upstream=upstream,
                          selfguide_version="test", started_at=now, finished_at=now, seconds=0.0,
                          summary=summary if summary is not None else {})
    atomic_write_json(workdir / name / RECORD_FILE, written.model_dump(mode="json", by_alias=True))
    return written


def test_completion_needs_the_current_spec_and_upstream_records(tmp_path):
    s = spec(evaluation=EVALUATION)
    assert completed_record(s, tmp_path, "generate") is None  # never ran
    record(tmp_path, "generate", spec(generation={"seed": 9}))
    assert completed_record(s, tmp_path, "generate") is None  # ran with another spec
    for name in ("generate", "train", "evaluate"):
        record(tmp_path, name, s)
        assert completed_record(s, tmp_path, name) is not None
    (tmp_path / "evaluate" / RECORD_FILE).write_text("{not json")
    assert completed_record(s, tmp_path, "evaluate") is None  # a torn record is not completion


def test_a_rerun_of_generate_invalidates_train_and_evaluate(tmp_path):
    s = spec(evaluation=EVALUATION)
    for name in ("generate", "train", "evaluate"):
        record(tmp_path, name, s)
    time.sleep(0.01)
    record(tmp_path, "generate", s)  # generate ran again, with the same spec
    assert completed_record(s, tmp_path, "generate") is not None
    assert completed_record(s, tmp_path, "train") is None
    assert completed_record(s, tmp_path, "evaluate") is None
    record(tmp_path, "train", s)
    assert completed_record(s, tmp_path, "train") is not None
    assert completed_record(s, tmp_path, "evaluate") is None  # still made from the old adapter


def test_a_stage_without_its_upstream_record_cannot_run(tmp_path):
    assert current_hash(spec(), tmp_path, "train") is None
    with pytest.raises(Exception, match="needs the output of stage generate"):
        run_stage(spec(), tmp_path, "train")


def test_run_stage_skips_a_stage_complete_for_this_spec(tmp_path):
    s = spec()
    summary = GenerateResult(examples=3, candidates=5).model_dump(mode="json", by_alias=True)
    before = record(tmp_path, "generate", s, summary)
    outcome = run_stage(s, tmp_path, "generate")
    assert (outcome.stage, outcome.skipped, outcome.seconds) == ("generate", True, 0.0)
    assert outcome.result == GenerateResult(examples=3, candidates=5)
    assert read_record(tmp_path / "generate") == before


HOLD = """
import sys, time
from pathlib import Path
from selfguide.runner import workdir_lock
with workdir_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_process_on_the_same_workdir_fails_clearly_and_touches_nothing(tmp_path):
    s = spec()
    before = record(tmp_path, "generate", s, GenerateResult().model_dump(mode="json", by_alias=True))
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RetryableError, match="in use by another selfguide process"):
            run_stage(s, tmp_path, "generate", force=True)
        assert read_record(tmp_path / "generate") == before
    finally:
        holder.kill()
        holder.wait()
    with workdir_lock(tmp_path):  # released when its holder dies
        pass


def test_the_first_stage_fails_fast_on_an_unreadable_evaluation_set(tmp_path, monkeypatch):
    from selfguide.contract.errors import PermanentError
    from selfguide.stages.generate import stage as generate

    def must_not_run(ctx):
        raise AssertionError("generation started")

    monkeypatch.setattr(generate, "run", must_not_run)
    with pytest.raises(PermanentError, match="spec.evaluation.path: /nonexistent/eval.jsonl does not exist"):
        run_stage(spec(evaluation={"path": "/nonexistent/eval.jsonl"}), tmp_path, "generate")


def test_the_first_stage_fails_fast_on_a_missing_local_model(tmp_path, monkeypatch):
    from selfguide.engine.models import ModelNotFound
    from selfguide.stages.generate import stage as generate

    monkeypatch.setattr(generate, "run", lambda ctx: (_ for _ in ()).throw(AssertionError("generation started")))
    with pytest.raises(ModelNotFound, match="does not exist"):
        run_stage(spec(model={"name": "/nonexistent/model"}), tmp_path, "generate")
