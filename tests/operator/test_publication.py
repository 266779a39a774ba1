"""The quality gate and publication in the planner: a model that misses `spec.evaluation.gate` fails the job
with reason QualityGateFailed (both scores in the condition and the Event) and is never named in
`status.outputs`; one that passes is published with its base model and serving files."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from selfguide.contract.findings import Findings, annotator_at_majority, findings
from selfguide.contract.results import EvaluateResult, Metric, judge
from selfguide.contract.status import Phase
from selfguide.contract.termination import TerminationMessage
from selfguide_operator.observed import Outcome
from selfguide_operator.planner import plan
from selfguide_operator.reasons import QUALITY_GATE_FAILED
from selfguide_operator.settings import OperatorSettings
from tests.operator.test_planner import child, done, observed, then

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings()
GATE = {"examples": [{"input": "c d", "output": "d c"}], "gate": {"minImprovement": 5}}


def evaluated(baseline: float, finetuned: float, min_improvement: float | None = 5, found: Findings | None = None):
    collapse = found.collapse if found else None
    result = EvaluateResult(metric=Metric.ROUGE_L, examples=1, baseline=baseline, finetuned=finetuned,
                            delta=finetuned - baseline, findings=found,
                            gate=None if min_improvement is None else judge(
                                min_improvement, [baseline], [finetuned], collapse=collapse))
    return child("evaluate", "complete", outcome=Outcome.parse(TerminationMessage(
        stage="evaluate", ok=True, summary=result.model_dump(mode="json", by_alias=True)).render()))


def finish(evaluate_child, **spec):
    """Run the planner through a whole job whose evaluate stage ends with `evaluate_child`."""
    job = observed(**spec)
    children = {"generate": done("generate"), "train": done("train")}
    job = then(job, plan(job, {"generate": done("generate")}, SETTINGS, NOW))
    job = then(job, plan(job, children | {"evaluate": child("evaluate")}, SETTINGS, NOW))
    return job, plan(job, children | {"evaluate": evaluate_child}, SETTINGS, NOW)


def test_judge_compares_the_improvement_with_the_minimum():
    assert judge(5, [50], [55]).passed and not judge(5, [50], [54.99]).passed and judge(-10, [50], [41]).passed
    assert "SELF-GUIDE 40.00 vs few-shot prompting 50.00 on 1 items" in judge(0, [50], [40]).message()


def test_the_gate_asks_for_evidence_not_a_point_estimate():
    """+5 points from one lucky item of 20 is no evidence: its interval reaches 0. +50 from ten is."""
    lucky = judge(5, [0.0] * 20, [100.0] + [0.0] * 19)
    assert lucky.improvement == 5.0 and lucky.lower == 0.0 and not lucky.passed
    assert "on 20 items (improvement +5.00, 95% interval [+0.00, +" in lucky.message()
    assert "lower end < required +5.00" in lucky.message()
    solid = judge(5, [0.0] * 20, [100.0] * 10 + [0.0] * 10)
    assert solid.passed and 5 <= solid.lower < solid.improvement == 50.0 < solid.upper
    assert judge(5, [0.0] * 20, [100.0] * 10 + [0.0] * 10, confidence=0.999).lower < solid.lower
    mixed = [100.0] * 6 + [-100.0] * 4 + [0.0] * 10  # six wins, four losses: +10 on average, interval spans 0
    assert not judge(0, [0.0] * 20, mixed).passed


def test_a_model_that_misses_the_gate_fails_the_job_and_is_not_published():
    before, result = finish(evaluated(50, 52), evaluation=GATE)
    status = result.status
    assert status.phase is Phase.FAILED
    failed = next(c for c in status.conditions if c.type == "Failed")
    assert failed.status.value == "True" and failed.reason == QUALITY_GATE_FAILED
    assert "SELF-GUIDE 52.00 vs few-shot prompting 50.00" in failed.message and "lower end < required +5.00" in failed.message
    assert [(e.type, e.reason) for e in result.events][-1] == ("Warning", QUALITY_GATE_FAILED)
    assert status.outputs is not None and status.outputs.adapter is None and status.outputs.serving is None
    assert status.outputs.dataset and status.outputs.report  # the data and the report stay for inspection
    assert status.evaluation is not None and status.evaluation.gate is not None and not status.evaluation.gate.passed
    assert all(s.phase is Phase.SUCCEEDED for s in status.stages)
    # a finished job stays failed (the planner never revisits the verdict)
    assert plan(then(before, result), {}, SETTINGS, NOW).status.phase is Phase.FAILED


def test_a_model_that_passes_the_gate_is_published_with_its_base_model_and_serving_files():
    _, result = finish(evaluated(50, 60), evaluation=GATE)
    status = result.status
    assert status.phase is Phase.SUCCEEDED and status.outputs is not None
    assert status.outputs.adapter == "pvc://selfguide-data/ns/demo/train/adapter"
    assert status.outputs.base_model == "bundled://smollm2-135m-instruct"
    assert status.outputs.serving == "pvc://selfguide-data/ns/demo/serving"


def test_with_a_gate_the_adapter_is_withheld_until_the_evaluation_passed():
    job = observed(evaluation=GATE)
    job = then(job, plan(job, {"generate": done("generate")}, SETTINGS, NOW))
    result = plan(job, {"generate": done("generate"), "train": done("train"), "evaluate": child("evaluate")},
                  SETTINGS, NOW)
    assert result.status.phase is Phase.RUNNING
    assert result.status.outputs is not None and result.status.outputs.adapter is None


def test_without_a_gate_the_adapter_is_named_once_trained_and_the_job_succeeds_whatever_the_scores():
    job = observed()
    job = then(job, plan(job, {"generate": done("generate")}, SETTINGS, NOW))
    running = plan(job, {"generate": done("generate"), "train": done("train"), "evaluate": child("evaluate")},
                   SETTINGS, NOW)
    assert running.status.outputs is not None and running.status.outputs.adapter is not None
    _, result = finish(evaluated(50, 10))
    assert result.status.phase is Phase.SUCCEEDED and result.status.outputs.serving is not None


def test_a_running_stage_keeps_its_last_progress_report_and_a_succeeded_one_shows_100_percent():
    from selfguide.contract.progress import StageProgress

    job = observed()
    job = then(job, plan(job, {"generate": child("generate")}, SETTINGS, NOW))
    reported = job.status.stages[0].model_copy(update={"progress": StageProgress(percent=40, eta_seconds=30, step=4)})
    job = replace(job, status=job.status.model_copy(update={"stages": [reported, *job.status.stages[1:]]}))
    running = plan(job, {"generate": child("generate")}, SETTINGS, NOW).status.stages[0]
    assert running.progress is not None and running.progress.percent == 40
    done_stage = plan(job, {"generate": done("generate")}, SETTINGS, NOW).status.stages[0]
    assert done_stage.progress is not None and (done_stage.progress.percent, done_stage.progress.eta_seconds) == (100, 0)
    assert done_stage.progress.step == 4


def test_with_spec_serving_the_published_adapter_gets_a_model_adapter_owned_by_the_job():
    from selfguide_operator.planner import ApplyObject

    serving = {"podSelector": {"model.aibrix.ai/name": "smollm2"}, "baseModelName": "smollm2"}
    _, result = finish(evaluated(50, 60), evaluation=GATE, serving=serving)
    applied = [a.body for a in result.actions if isinstance(a, ApplyObject) and a.body["kind"] == "ModelAdapter"]
    assert len(applied) == 1 and result.status.outputs.model_adapter == "demo"
    body = applied[0]
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1" and body["metadata"]["namespace"] == "ns"
    assert body["spec"] == {"baseModel": "smollm2", "podSelector": {"matchLabels": {"model.aibrix.ai/name": "smollm2"}},
                            "artifactURL": "/data/ns/demo/train/adapter"}
    _, lost = finish(evaluated(50, 51), evaluation=GATE, serving=serving)
    assert not [a for a in lost.actions if isinstance(a, ApplyObject)] and lost.status.outputs.model_adapter is None


COLLAPSED = findings(["2"] * 81, ["2"] * 20, ["0", "1", "2", "2"] * 5)


def test_a_collapsed_model_fails_the_gate_whatever_its_score_and_the_status_names_the_collapse():
    assert COLLAPSED is not None and COLLAPSED.collapse is not None
    _, result = finish(evaluated(50, 90, found=COLLAPSED), evaluation=GATE)
    status = result.status
    failed = next(c for c in status.conditions if c.type == "Failed")
    assert status.phase is Phase.FAILED and failed.reason == QUALITY_GATE_FAILED
    assert "quality gate failed whatever the score (one-label training set: 81 of 81 training examples are " \
           "labelled '2'; collapsed classifier: SELF-GUIDE answers '2' to 20 of 20" in failed.message
    assert status.outputs is not None and status.outputs.adapter is None
    assert status.evaluation is not None and status.evaluation.findings == COLLAPSED


def test_without_a_gate_a_job_that_succeeds_says_what_was_found():
    found = COLLAPSED.model_copy(update={"annotator": annotator_at_majority(45.0, 61.7, 60)})
    _, result = finish(evaluated(50, 90, min_improvement=None, found=found))
    status = result.status
    assert status.phase is Phase.SUCCEEDED
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.message.startswith("all 3 stages succeeded; warning: one-label training set: 81 of 81")
    assert "; warning: self-training cannot help: the annotator labels 45.0% of 60 gold inputs right" in ready.message
    evaluate = next(s for s in status.stages if s.name == "evaluate")
    assert evaluate.message is not None and "collapsed classifier: SELF-GUIDE answers '2'" in evaluate.message
