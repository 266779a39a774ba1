"""The stage contract end to end: the real `selfguide stage ...` on the bundled model writes its termination
message, and the operator's own code (`Outcome.parse`, `stage_report`) reads it into the job's status."""

from __future__ import annotations

import json
import shutil

import pytest

from selfguide.contract.errors import ExitCode
from selfguide.contract.record import read_record
from selfguide.contract.registry import stage
from selfguide.contract.status import SelfGuideJobStatus
from selfguide_operator.observed import Outcome
from selfguide_operator.status import stage_report
from tests.stage_runs import run_cli, sentiment_manifest, write_manifest

EVAL = [{"input": "Absolutely love it, works perfectly.", "output": "positive"},
        {"input": "Broke on day one. Avoid.", "output": "negative"}]


@pytest.fixture(scope="module")
def pipeline(generated_sentiment, tmp_path_factory):
    """generate (shared run), then train and evaluate, each through `selfguide stage` with its own termination
    log, as stage pods run them."""
    assert generated_sentiment.result.returncode == 0, generated_sentiment.result.stderr[-3000:]
    root = tmp_path_factory.mktemp("contract")
    workdir = root / "work"
    workdir.mkdir()
    shutil.copytree(generated_sentiment.workdir / "generate", workdir / "generate")
    manifest = sentiment_manifest(evaluation={"examples": EVAL, "maxNewTokens": 4},
                                  training={"epochs": 1, "batchSize": 4, "maxLength": 64})
    spec_file = write_manifest(root / "job.yaml", manifest)
    messages = {"generate": generated_sentiment.termination_log.read_text()}
    for name in ("train", "evaluate"):
        log = root / f"{name}.termination-log"
        result = run_cli("stage", name, "--spec", spec_file, "--workdir", workdir, SELFGUIDE_TERMINATION_LOG=str(log))
        assert result.returncode == 0, result.stderr[-3000:]
        messages[name] = log.read_text()
    return spec_file, workdir, messages


@pytest.mark.slow
@pytest.mark.parametrize("name", ["generate", "train", "evaluate"])
def test_the_operator_reads_what_the_real_stage_reports(pipeline, name):
    _, workdir, messages = pipeline
    outcome = Outcome.parse(messages[name])
    assert outcome.ok and outcome.error is None and outcome.message is not None
    report = stage_report(name, outcome)
    definition = stage(name)
    result = report.fields[definition.status_field]
    assert isinstance(result, definition.result)
    assert report.message == result.line() and "breaks the stage contract" not in report.message
    record = read_record(workdir / name)
    assert record is not None and result == definition.result.model_validate(record.summary)
    status = SelfGuideJobStatus.model_validate({definition.status_field: json.loads(messages[name])["summary"]})
    assert getattr(status, definition.status_field) == result


@pytest.mark.slow
def test_a_failing_stage_reports_a_permanent_failure_the_operator_reads(tmp_path):
    log = tmp_path / "termination-log"
    spec_file = write_manifest(tmp_path / "job.yaml", sentiment_manifest())
    result = run_cli("stage", "train", "--spec", spec_file, "--workdir", tmp_path / "empty",
                     SELFGUIDE_TERMINATION_LOG=str(log))
    assert result.returncode == ExitCode.PERMANENT, result.stderr[-2000:]
    outcome = Outcome.parse(log.read_text())
    assert not outcome.ok and outcome.message is not None and outcome.message.permanent
    assert "needs the output of stage generate" in (outcome.error or "")


@pytest.mark.slow
def test_retraining_makes_run_redo_the_evaluation(pipeline):
    """`selfguide stage train --force` then `selfguide run`: the report is made again from the new adapter
    (before chained records, run kept the old report)."""
    spec_file, workdir, _ = pipeline
    before = read_record(workdir / "evaluate")
    assert run_cli("stage", "train", "--spec", spec_file, "--workdir", workdir, "--force").returncode == 0
    train = read_record(workdir / "train")
    result = run_cli("run", spec_file, "--workdir", workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[-5:] if line.startswith("  ")}
    assert "already complete" in lines["generate"] and "already complete" in lines["train"]
    assert "already complete" not in lines["evaluate"]
    after = read_record(workdir / "evaluate")
    assert after is not None and before is not None and train is not None
    assert after.upstream["train"] == train.record_hash != before.upstream["train"]
