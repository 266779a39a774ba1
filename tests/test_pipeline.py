"""The pipeline driver (`selfguide.pipeline`): every stage a job needs, the gate's verdict and publishing in one
place. The work directory holds the records of completed stages (tests/test_publish.py), so the driver finds every
stage complete and only decides."""

from __future__ import annotations

import pytest

from selfguide.contract.errors import QualityGateFailed
from selfguide.contract.publication import may_publish, missed_gate
from selfguide.contract.results import EvaluateResult, Metric, judge
from selfguide.pipeline import JobRef, run_pipeline
from tests.test_publish import complete, gated_job


def test_a_model_that_misses_the_gate_is_not_published_and_the_verdict_comes_back(tmp_path):
    _, job = gated_job(tmp_path)
    workdir = tmp_path / "work"
    complete(job, workdir, baseline=50, finetuned=52)
    (workdir / "serving").mkdir()  # stale: withdrawn by this verdict
    run = run_pipeline(job.spec, workdir, publish_as=JobRef.of(job))
    assert [(o.stage, o.skipped) for o in run.outcomes] == [("generate", True), ("train", True), ("evaluate", True)]
    assert run.seconds == 3.0  # what the stages took when they ran, from their records
    assert run.serving is None and not (workdir / "serving").exists()
    assert run.missed_gate is not None and not run.missed_gate.passed
    with pytest.raises(QualityGateFailed, match="quality gate failed.*the model is not published"):
        run.check_gate()


def test_a_model_that_passes_is_published_only_when_asked(tmp_path):
    _, job = gated_job(tmp_path)
    workdir = tmp_path / "work"
    complete(job, workdir, baseline=50, finetuned=60)
    unpublished = run_pipeline(job.spec, workdir)  # bench and sweep: nothing published
    assert unpublished.serving is None and not (workdir / "serving").exists() and unpublished.missed_gate is None
    run = run_pipeline(job.spec, workdir, publish_as=JobRef.of(job))
    assert run.serving == workdir / "serving" and (run.serving / "vllm-serve.sh").is_file()
    run.check_gate()


def test_without_a_gate_the_model_may_be_published_and_with_one_only_once_it_passed(tmp_path):
    _, job = gated_job(tmp_path)
    ungated = job.spec.model_copy(update={"evaluation": None})

    def evaluation(gate: bool, finetuned: float) -> EvaluateResult:
        return EvaluateResult(metric=Metric.ROUGE_L, examples=1, baseline=50, finetuned=finetuned,
                              delta=finetuned - 50, gate=judge(5, [50], [finetuned]) if gate else None)

    assert may_publish(ungated, None) and missed_gate(ungated, None) is None
    assert not may_publish(job.spec, None)  # no verdict yet
    assert not may_publish(job.spec, evaluation(False, 60))  # a gated job whose evaluation carries no verdict
    assert may_publish(job.spec, evaluation(True, 60)) and missed_gate(job.spec, evaluation(True, 60)) is None
    assert not may_publish(job.spec, evaluation(True, 52))
    assert missed_gate(job.spec, evaluation(True, 52)) == evaluation(True, 52).gate
