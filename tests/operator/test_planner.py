"""Unit tests of the planner: every reconcile decision, without a cluster."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from selfguide.contract.status import Phase
from selfguide.contract.termination import TerminationMessage
from selfguide.manifest import MAX_SPEC_BYTES
from selfguide_operator.observed import ChildJob, Observed, Outcome, Waiting
from selfguide_operator.planner import ApplyObject, CreateJob, DeleteObject, Plan, SuspendJob, plan
from selfguide_operator.reasons import SPEC_TOO_LARGE
from selfguide_operator.settings import OperatorSettings
from selfguide_operator.status import Verdict
from tests.operator.fake_stage import RESULTS
from tests.operator.helpers import manifest

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SETTINGS = OperatorSettings()
UID = "uid-1"


def observed(status: dict[str, Any] | None = None, labels: dict[str, str] | None = None, generation: int = 1,
             deleting: bool = False, **spec: Any) -> Observed:
    body = manifest("demo", **spec)
    body["metadata"] |= {"namespace": "ns", "uid": UID, "generation": generation, "labels": labels or {}}
    if deleting:
        body["metadata"]["deletionTimestamp"] = "2026-01-01T11:00:00Z"
    body["status"] = status or {}
    return Observed.from_body(body)


def child(stage: str, state: str = "running", *, reason: str | None = None, outcome: Outcome | None = None,
          owner: str = UID, suspended: bool = False, failed: int = 0) -> ChildJob:
    status: dict[str, Any] = {"failed": failed}
    if state != "pending":
        status["startTime"] = "2026-01-01T11:50:00Z"
    if state == "running":
        status["active"] = 1
    if state in ("complete", "failed"):
        status["conditions"] = [{"type": "Complete" if state == "complete" else "Failed", "status": "True",
                                 "reason": reason, "message": "condition message",
                                 "lastTransitionTime": "2026-01-01T11:55:00Z"}]
        status["succeeded" if state == "complete" else "failed"] = failed + 1
    body = {"metadata": {"name": f"demo-{stage}", "uid": f"job-{stage}", "labels": {"selfguide.dev/stage": stage},
                         "ownerReferences": [{"uid": owner, "controller": True}]},
            "spec": {"suspend": suspended}, "status": status}
    return replace(ChildJob.from_body(body), outcome=outcome)


def done(stage: str) -> ChildJob:
    return child(stage, "complete", outcome=Outcome.parse(TerminationMessage(
        stage=stage, ok=True, summary=RESULTS[stage].model_dump(mode="json", by_alias=True)).render()))


def then(job: Observed, result: Plan) -> Observed:
    """The job as the next reconcile sees it, once `result`'s status was written."""
    return replace(job, status=result.status)


def condition(result: Plan, kind: str) -> str:
    return next(c.status.value for c in result.status.conditions if c.type == kind)


def test_a_new_job_gets_its_spec_config_map_and_its_first_stage_job():
    result = plan(observed(), {}, SETTINGS, NOW)
    assert [type(a) for a in result.actions] == [ApplyObject, CreateJob]
    config_map, job = result.actions[0].body, result.actions[1].body
    assert config_map["metadata"]["name"] == "demo-spec"
    assert job["metadata"]["name"] == "demo-generate" and job["spec"]["suspend"] is False
    assert result.status.phase is Phase.PENDING and result.status.progress == "0/3"
    assert result.status.stages[0].job_name == "demo-generate"
    assert [e.reason for e in result.events] == ["Waiting"]
    assert condition(result, "Reconciling") == "True" and condition(result, "Ready") == "False"


def test_a_started_stage_makes_the_job_running():
    job = then(observed(), plan(observed(), {}, SETTINGS, NOW))
    result = plan(job, {"generate": child("generate")}, SETTINGS, NOW)
    assert result.actions == []
    assert result.status.phase is Phase.RUNNING and result.status.stage == "generate"
    assert result.status.start_time == datetime(2026, 1, 1, 11, 50, tzinfo=UTC)
    assert [e.reason for e in result.events] == ["StageStarted", "StageRunning"]
    assert condition(result, "Running") == "True"


def test_the_next_stage_starts_only_after_the_previous_one_completed():
    job = observed()
    result = plan(job, {"generate": done("generate")}, SETTINGS, NOW)
    assert [a.body["metadata"]["name"] for a in result.actions if isinstance(a, CreateJob)] == ["demo-train"]
    status = result.status
    assert status.progress == "1/3" and status.stage == "train"
    assert status.generation is not None and status.generation.examples == 8
    assert status.generation == RESULTS["generate"]
    assert status.outputs is not None and status.outputs.dataset == "pvc://selfguide-data/ns/demo/generate/train.jsonl"
    assert status.stages[0].message == "8 examples kept of 12 candidates (dropped: duplicate 3, too_long 1)"


def test_all_stages_done_completes_the_job_with_outputs_and_metrics():
    children = {stage: done(stage) for stage in ("generate", "train", "evaluate")}
    result = plan(observed(), children, SETTINGS, NOW)
    status = result.status
    assert result.actions == []
    assert status.phase is Phase.SUCCEEDED and status.progress == "3/3" and status.completion_time == NOW
    assert status.outputs.adapter == "pvc://selfguide-data/ns/demo/train/adapter"
    assert status.outputs.report == "pvc://selfguide-data/ns/demo/evaluate/report.json"
    assert status.evaluation.delta == 50.0 and status.training.final_loss == 1.25
    assert {c.type: c.status.value for c in status.conditions} == {
        "Running": "False", "Complete": "True", "Failed": "False", "Suspended": "False", "Ready": "True",
        "Reconciling": "False", "Stalled": "False"}
    assert result.events[-1].reason == "Completed"


def test_without_evaluation_there_are_two_stages():
    children = {"generate": done("generate"), "train": done("train")}
    result = plan(observed(evaluation=None), children, SETTINGS, NOW)
    assert result.status.phase is Phase.SUCCEEDED and result.status.progress == "2/2"
    assert result.status.outputs.report is None


def test_a_permanent_failure_fails_the_job_with_the_stage_error():
    failure = Outcome(ok=False, error="model /nonexistent/model: /nonexistent/model does not exist")
    result = plan(observed(), {"generate": child("generate", "failed", reason="PodFailurePolicy", outcome=failure)},
                  SETTINGS, NOW)
    status = result.status
    assert status.phase is Phase.FAILED and status.completion_time == NOW
    failed = next(c for c in status.conditions if c.type == "Failed")
    assert failed.reason == "PermanentError"
    assert failed.message == "stage generate failed: model /nonexistent/model: /nonexistent/model does not exist"
    assert condition(result, "Stalled") == "True"
    assert [(e.type, e.reason) for e in result.events] == [  # a start seen only once the stage failed still counts
        ("Normal", "StageStarted"), ("Warning", "StageFailed"), ("Warning", "PermanentError")]


def test_retries_exhausted_fail_with_backoff_limit_exceeded_and_count_attempts():
    failure = Outcome(ok=False, error="CUDA error: an illegal memory access")
    result = plan(observed(), {"train": child("train", "failed", reason="BackoffLimitExceeded", outcome=failure,
                                              failed=2), "generate": done("generate")}, SETTINGS, NOW)
    assert next(c for c in result.status.conditions if c.type == "Failed").reason == "BackoffLimitExceeded"
    assert result.status.stages[1].attempts == 3 and result.status.stage == "train"


def test_a_failure_without_termination_message_uses_the_job_condition():
    result = plan(observed(), {"generate": child("generate", "failed", reason="BackoffLimitExceeded")}, SETTINGS, NOW)
    assert result.status.stages[0].message == "condition message"


def test_suspend_suspends_the_running_stage_job_and_resume_resumes_it():
    running = {"generate": child("generate")}
    result = plan(observed(suspend=True), running, SETTINGS, NOW)
    assert result.actions == [SuspendJob("demo-generate", True)]
    suspended = {"generate": child("generate", "pending", suspended=True)}
    result = plan(observed(suspend=True), suspended, SETTINGS, NOW)
    assert result.actions == [] and result.status.phase is Phase.SUSPENDED
    assert condition(result, "Suspended") == "True" and condition(result, "Reconciling") == "False"
    assert plan(observed(suspend=False), suspended, SETTINGS, NOW).actions == [SuspendJob("demo-generate", False)]


def test_a_job_suspended_before_it_starts_creates_nothing():
    result = plan(observed(suspend=True), {}, SETTINGS, NOW)
    assert result.actions == [] and result.status.phase is Phase.SUSPENDED


def test_kueue_jobs_are_created_suspended_and_never_unsuspended_by_the_operator():
    kueue = {"kueue.x-k8s.io/queue-name": "gpu-queue"}
    result = plan(observed(labels=kueue), {}, SETTINGS, NOW)
    job = next(a.body for a in result.actions if isinstance(a, CreateJob))
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    waiting = {"generate": child("generate", "pending", suspended=True)}
    result = plan(observed(labels=kueue), waiting, SETTINGS, NOW)
    assert result.actions == [] and result.status.phase is Phase.PENDING
    result = plan(observed(labels=kueue, suspend=True), {"generate": child("generate")}, SETTINGS, NOW)
    assert result.actions == [DeleteObject("Job", "demo-generate")]


def test_the_deadline_fails_the_job_and_stops_the_running_stage():
    status = {"startTime": "2026-01-01T11:00:00Z"}
    result = plan(observed(status, activeDeadlineSeconds=600), {"generate": done("generate"),
                                                               "train": child("train")}, SETTINGS, NOW)
    assert result.actions == [DeleteObject("Job", "demo-train")]
    assert result.status.phase is Phase.FAILED
    assert next(c for c in result.status.conditions if c.type == "Failed").reason == "DeadlineExceeded"
    assert [s.phase for s in result.status.stages] == [Phase.SUCCEEDED, Phase.FAILED, Phase.PENDING]


def test_a_stage_job_gets_the_time_left_before_the_deadline():
    status = {"startTime": "2026-01-01T11:59:00Z"}
    result = plan(observed(status, activeDeadlineSeconds=600), {"generate": done("generate")}, SETTINGS, NOW)
    job = next(a.body for a in result.actions if isinstance(a, CreateJob))
    assert job["spec"]["activeDeadlineSeconds"] == 540


def test_a_stage_job_failing_its_deadline_fails_the_job_as_deadline_exceeded():
    result = plan(observed(), {"generate": child("generate", "failed", reason="DeadlineExceeded")}, SETTINGS, NOW)
    assert next(c for c in result.status.conditions if c.type == "Failed").reason == "DeadlineExceeded"


def finished(**spec: Any) -> Observed:
    children = {stage: done(stage) for stage in ("generate", "train", "evaluate")}
    job = observed(**spec)
    return then(job, plan(job, children, SETTINGS, NOW))


def test_ttl_deletes_the_children_once_it_passed_but_never_the_selfguidejob():
    job = finished(ttlSecondsAfterFinished=60)
    children = {stage: done(stage) for stage in ("generate", "train", "evaluate")}
    assert plan(job, children, SETTINGS, NOW + timedelta(seconds=59)).actions == []
    actions = plan(job, children, SETTINGS, NOW + timedelta(seconds=60)).actions
    assert actions == [DeleteObject("Job", "demo-generate"), DeleteObject("Job", "demo-train"),
                       DeleteObject("Job", "demo-evaluate"), DeleteObject("ConfigMap", "demo-spec")]
    assert plan(job, {}, SETTINGS, NOW + timedelta(seconds=61)).actions == []


def test_a_finished_job_stays_finished_and_keeps_its_results_when_children_are_gone():
    job = finished()
    result = plan(replace(job, generation=2), {}, SETTINGS, NOW + timedelta(hours=1))
    assert result.actions == [] and result.events == []
    assert result.status == job.status.model_copy(update={"observed_generation": 2})


def test_a_succeeded_stage_whose_job_is_gone_is_not_run_again():
    job = then(observed(), plan(observed(), {"generate": done("generate")}, SETTINGS, NOW))
    result = plan(job, {"train": child("train")}, SETTINGS, NOW)
    assert result.actions == []
    assert [s.phase for s in result.status.stages] == [Phase.SUCCEEDED, Phase.RUNNING, Phase.PENDING]
    assert result.status.generation.examples == 8


def test_a_stage_job_deleted_mid_run_is_created_again():
    job = then(observed(), plan(observed(), {"generate": child("generate")}, SETTINGS, NOW))
    assert [type(a) for a in plan(job, {}, SETTINGS, NOW).actions] == [ApplyObject, CreateJob]


def test_an_unchanged_world_changes_nothing_and_keeps_transition_times():
    job = then(observed(), plan(observed(), {"generate": child("generate")}, SETTINGS, NOW))
    later = plan(job, {"generate": child("generate")}, SETTINGS, NOW + timedelta(minutes=5))
    assert later.status == job.status and later.actions == [] and later.events == []


def test_an_invalid_spec_fails_the_job():
    job = replace(observed(), spec=None, problems="spec.task.labels: labels are only allowed for classification")
    result = plan(job, {}, SETTINGS, NOW)
    failed = next(c for c in result.status.conditions if c.type == "Failed")
    assert (failed.reason, failed.message) == ("InvalidSpec", job.problems)
    assert result.actions == []


def test_a_spec_too_large_for_its_config_map_fails_the_job_as_spec_too_large():
    job = observed(pod={"affinity": {"x": "p" * MAX_SPEC_BYTES}})
    failed = next(c for c in plan(job, {}, SETTINGS, NOW).status.conditions if c.type == "Failed")
    assert failed.reason == SPEC_TOO_LARGE and "the spec takes" in failed.message


def test_a_job_being_deleted_is_left_alone():
    job = observed(deleting=True)
    assert plan(job, {"generate": child("generate")}, SETTINGS, NOW) == Plan(job.status)


@pytest.mark.parametrize("summary", [{"examples": "many"}, {"dropped": ["x"]}, {"exactMatch": 1}])
def test_a_result_that_breaks_the_contract_is_visible_in_the_status(summary):
    text = TerminationMessage(stage="generate", ok=True, summary=summary).render()
    result = plan(observed(), {"generate": child("generate", "complete", outcome=Outcome.parse(text))}, SETTINGS, NOW)
    assert result.status.stages[0].phase is Phase.SUCCEEDED
    assert "breaks the stage contract" in result.status.stages[0].message
    assert result.status.generation is None


def test_outcome_parsing():
    parsed = Outcome.parse('{"stage":"train","ok":false,"permanent":true,"error":"boom"}')
    assert (parsed.ok, parsed.error, parsed.message.permanent) == (False, "boom", True)
    assert Outcome.parse("Traceback ...\nRuntimeError: CUDA out of memory\n").error.endswith("out of memory")
    long = Outcome.parse("first " + "x" * 5000 + " last").error
    assert long.startswith("first x") and "x [...] x" in long and long.endswith("x last") and len(long) == 1024


def test_a_long_refusal_keeps_its_first_fields():
    """Issue 30: a failure message over 1,024 characters lost its beginning (the first offending fields)."""
    env = [{"name": f"LD_{i}", "value": "x"} for i in range(40)]
    result = plan(observed(pod={"securityContext": {"privileged": True}, "env": env}), {}, SETTINGS, NOW)
    failed = next(c for c in result.status.conditions if c.type == "Failed")
    assert len(failed.message) == 1024
    assert failed.message.startswith("spec.pod.securityContext.privileged: true is not allowed")
    assert "spec.pod.env[39].name" in failed.message


def waiting_child(stage: str, reason: str = "Unschedulable", message: str = "0/1 nodes: Insufficient nvidia.com/gpu",
                  since: datetime = NOW - timedelta(minutes=5)) -> ChildJob:
    return replace(child(stage), waiting=Waiting(reason, message, since))


def test_a_stage_whose_pod_does_not_run_is_pending_with_the_reason():
    job = then(observed(), plan(observed(), {}, SETTINGS, NOW))
    result = plan(job, {"generate": waiting_child("generate")}, SETTINGS, NOW)
    assert result.status.phase is Phase.PENDING and result.status.stages[0].phase is Phase.PENDING
    assert result.status.stages[0].message == "Unschedulable: 0/1 nodes: Insufficient nvidia.com/gpu"
    reconciling = next(c for c in result.status.conditions if c.type == "Reconciling")
    assert reconciling.reason == "Unschedulable" and "Insufficient nvidia.com/gpu" in reconciling.message
    assert condition(result, "Running") == "False"
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "Unschedulable")]
    assert plan(then(job, result), {"generate": waiting_child("generate")}, SETTINGS, NOW).events == []


def test_the_pending_timeout_fails_the_job_and_deletes_the_waiting_stage_job():
    pending = {"generate": waiting_child("generate", "FailedCreate", "pods is forbidden")}
    assert plan(observed(pendingTimeoutSeconds=301), pending, SETTINGS, NOW).status.phase is Phase.PENDING
    result = plan(observed(pendingTimeoutSeconds=300), pending, SETTINGS, NOW)
    failed = next(c for c in result.status.conditions if c.type == "Failed")
    assert failed.reason == "PendingTimeout" and "FailedCreate: pods is forbidden" in failed.message
    assert result.actions == [DeleteObject("Job", "demo-generate")]


def test_without_its_own_timeout_a_job_gets_the_operators_default_pending_timeout():
    pending = {"generate": waiting_child("generate", since=NOW - timedelta(hours=7))}
    result = plan(observed(), pending, SETTINGS, NOW)
    failed = next(c for c in result.status.conditions if c.type == "Failed")
    assert failed.reason == "PendingTimeout" and "pendingTimeoutSeconds=21600" in failed.message
    waits_forever = OperatorSettings(pending_timeout_seconds=None)
    assert plan(observed(), pending, waits_forever, NOW).status.phase is Phase.PENDING
    assert plan(observed(pendingTimeoutSeconds=86_400), pending, SETTINGS, NOW).status.phase is Phase.PENDING


def test_a_refused_child_fails_the_job_with_its_reason_and_stops_what_runs():
    children = {"generate": done("generate"), "train": child("train")}
    refused = Verdict(Phase.FAILED, "NameConflict", "ConfigMap demo-spec exists and does not belong to it")
    result = plan(observed(), children, SETTINGS, NOW, failure=refused)
    failed = next(c for c in result.status.conditions if c.type == "Failed")
    assert (failed.reason, failed.message) == ("NameConflict", refused.message)
    assert result.actions == [DeleteObject("Job", "demo-train")]
    assert [s.phase for s in result.status.stages] == [Phase.SUCCEEDED, Phase.FAILED, Phase.PENDING]
    assert (result.events[-1].type, result.events[-1].reason) == ("Warning", "NameConflict")


def test_a_spec_made_invalid_mid_run_stops_the_running_stage_and_keeps_the_history():
    children = {"generate": done("generate"), "train": child("train")}
    job = then(observed(), plan(observed(), children, SETTINGS, NOW))
    result = plan(replace(job, spec=None, problems="spec.evaluation.path: bad"), children, SETTINGS, NOW)
    assert result.status.phase is Phase.FAILED and result.actions == [DeleteObject("Job", "demo-train")]
    assert [(s.name, s.phase) for s in result.status.stages] == [
        ("generate", Phase.SUCCEEDED), ("train", Phase.FAILED), ("evaluate", Phase.PENDING)]
    assert result.status.generation == RESULTS["generate"] and result.status.outputs == job.status.outputs
    assert result.status.progress == "1/3"


def test_a_failed_job_whose_stage_job_still_runs_deletes_it():
    job = then(observed(), plan(replace(observed(), spec=None, problems="bad"), {}, SETTINGS, NOW))
    assert plan(job, {"generate": child("generate")}, SETTINGS, NOW).actions == [DeleteObject("Job", "demo-generate")]
