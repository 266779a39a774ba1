"""A collapse named end to end: the real train and evaluate stages on the bundled model, from a training set of
one label, under a gate that any score passes (`minImprovement: -100`). The gate fails anyway, naming the
collapse; `selfguide run` exits with code 4, and the report, its Markdown and the stage line say why. The
annotator's accuracy is measured on the evaluation inputs (`annotatorAccuracy`) and judged against the majority.

The generate stage's artifacts are written by hand (a one-label set is what the rule is about, and the model
would not reliably write one), with the record a completed stage leaves, so `run` starts at train."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

import selfguide
from selfguide.artifacts import atomic_write_json, atomic_write_jsonl
from selfguide.contract.errors import ExitCode
from selfguide.contract.evaluation_report import EvaluationReport
from selfguide.contract.findings import one_answer_model
from selfguide.contract.layout import FILTER_REPORT, RECORD_FILE, REPORT, TRAIN_DATA
from selfguide.contract.record import StageRecord
from selfguide.contract.results import GenerateResult
from selfguide.runner import stage_hash
from selfguide.spec import SelfGuideJob
from tests.stage_runs import run_cli, sentiment_manifest, write_manifest

TRAINING_INPUTS = ["It broke after a week.", "The screen cracked on day one.", "Support never answered me.",
                   "Battery dies in an hour.", "Cheap and flimsy.", "Stopped charging after a month."]
EVALUATION = [{"input": text, "output": label} for text, label in [
    ("Absolutely love it, works perfectly.", "positive"), ("Stopped working within a week.", "negative"),
    ("Fast delivery and great quality.", "positive"), ("The sound is muffled and it crashes.", "negative"),
    ("Comfortable, stylish and the battery is excellent.", "positive"), ("Cracked the first time I used it.", "negative"),
    ("Best purchase I made this year.", "positive"), ("Waste of money.", "negative"),
    ("Works exactly as described, very happy.", "positive"), ("Arrived broken and smelled of smoke.", "negative")]]


def write_generate_stage(job: SelfGuideJob, workdir) -> None:
    """The artifacts and record of a completed generate stage whose training set is all `negative`."""
    atomic_write_jsonl(workdir / TRAIN_DATA, ({"input": text, "output": "negative"} for text in TRAINING_INPUTS))
    kept = len(TRAINING_INPUTS)
    atomic_write_json(workdir / FILTER_REPORT, {
        "prompts": {"built": 1, "trimmed": 0, "skipped": {}},
        "inputs": {"in": kept, "kept": kept, "dropped": {}},
        "annotation": {"in": kept, "kept": kept, "dropped": {}, "samplesDropped": {}, "method": "vote"},
        "final": kept})
    result = GenerateResult(examples=kept, candidates=kept)
    now = datetime.now(UTC)
    record = StageRecord(stage="generate", config_hash=stage_hash(job.spec, "generate", {}),
                         selfguide_version=selfguide.__version__, started_at=now, finished_at=now, seconds=1.0,
                         summary=result.model_dump(mode="json", by_alias=True))
    atomic_write_json(workdir / "generate" / RECORD_FILE, record.model_dump(mode="json", by_alias=True))


@pytest.mark.slow
def test_a_one_label_training_set_fails_the_gate_whatever_the_score(tmp_path):
    document = sentiment_manifest(
        evaluation={"maxNewTokens": 4, "batchSize": 8, "examples": EVALUATION, "gate": {"minImprovement": -100},
                    "annotatorAccuracy": True},
        training={"epochs": 1, "batchSize": 4, "maxLength": 64})
    manifest, workdir, job = write_manifest(tmp_path / "job.yaml", document), tmp_path / "work", SelfGuideJob.model_validate(document)
    write_generate_stage(job, workdir)

    result = run_cli("run", manifest, "--workdir", workdir)
    assert result.returncode == ExitCode.QUALITY_GATE, result.stdout[-2000:] + result.stderr[-4000:]
    named = "one-label training set: 6 of 6 training examples are labelled 'negative'"
    assert f"quality gate failed whatever the score ({named}" in result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.split()[:1] == ["evaluate"]]
    assert named in line
    assert not (workdir / "serving").exists()

    report = EvaluationReport.read(workdir / REPORT)
    assert report.gate is not None and not report.gate.passed and report.gate.lower >= -100
    assert report.findings is not None and report.findings.training_set is not None
    assert report.labels is not None and report.labels.training == {"negative": 6}
    assert report.labels.gold == {"positive": 5, "negative": 5}
    for system, counts in report.labels.answers.items():  # the counts are those of the answers' labels
        answers = [p.answer(system) for p in report.predictions]
        assert sum(counts.values()) == sum(a is not None and a.label is not None for a in answers)
        assert all(a.score == 0 for a in answers if a is not None and a.label is None)
    tuned = [p.self_guide.label for p in report.predictions]
    assert report.findings.answers == one_answer_model(tuned, [p.gold for p in report.predictions])
    annotator = report.annotator  # measured on the evaluation inputs, with the job's annotation method
    assert annotator is not None and (annotator.items, annotator.method.value, annotator.majority_share) == (
        10, job.spec.generation.annotation.method.value, 50.0)
    assert report.findings.annotator == annotator.finding() and (annotator.finding() is None) == (annotator.accuracy > 50)
    markdown = (workdir / "evaluate" / "report.md").read_text()
    assert f"**Warning: {named}.**" in markdown and f"Annotator: {annotator.line()}." in markdown
    assert json.loads((workdir / REPORT).read_text())["gate"]["collapse"].startswith(named)
