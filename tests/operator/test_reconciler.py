"""Unit tests of the reconciler's I/O around the planner, with a recording stand-in for the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from selfguide_operator.prometheus_metrics import Metrics
from selfguide_operator.reconciler import Reconciler
from selfguide_operator.settings import OperatorSettings
from selfguide_operator.status import Event
from tests.operator.fake_stage import RESULTS
from tests.operator.helpers import manifest

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class RecordingKube:
    """Answers pod listings from `pods` and records every other call."""

    def __init__(self, pods: list[dict[str, Any]] | None = None) -> None:
        self.pods = pods or []
        self.calls: list[tuple] = []

    def list(self, kind: str, namespace: str, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        self.calls.append(("list", kind, label_selector or field_selector))
        return self.pods

    def create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", kind, body["metadata"]["name"]))
        return {**body, "metadata": {**body["metadata"], "uid": f"uid-of-{body['metadata']['name']}"}}

    def apply(self, kind: str, namespace: str, body: dict[str, Any]) -> None:
        self.calls.append(("apply", kind, body["metadata"]["name"]))

    def json_patch(self, kind: str, namespace: str, name: str, operations: list[dict[str, Any]]) -> None:
        self.calls.append(("json_patch", kind, name))

    def merge_patch(self, kind: str, namespace: str, name: str, body: dict[str, Any],
                    subresource: str | None = None) -> None:
        self.calls.append(("patch", kind, name, subresource, body))

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        self.calls.append(("delete", kind, name))
        return True


def selfguidejob(uid: str = "uid-1") -> dict[str, Any]:
    body = manifest("demo")
    body["metadata"] |= {"namespace": "ns", "uid": uid, "generation": 1}
    return body


def stage_job(stage: str, owner: str = "uid-1", complete: bool = False) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": "2026-01-01T11:00:00Z", "active": 0 if complete else 1}
    if complete:
        status |= {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    return {"metadata": {"name": f"demo-{stage}", "uid": f"job-{stage}", "labels": {"selfguide.dev/stage": stage},
                         "ownerReferences": [{"uid": owner, "controller": True}]},
            "spec": {"suspend": False}, "status": status}


def terminated_pod(stage: str) -> dict[str, Any]:
    message = json.dumps({"stage": stage, "ok": True, "summary": RESULTS[stage].model_dump(mode="json", by_alias=True)})
    return {"status": {"containerStatuses": [{"state": {"terminated": {"message": message,
                                                                        "finishedAt": "2026-01-01T11:30:00Z"}}}]}}


def reconciler(kube: RecordingKube) -> Reconciler:
    return Reconciler(kube, OperatorSettings(), Metrics(), clock=lambda: NOW)  # type: ignore[arg-type]


def test_jobs_of_a_deleted_namesake_are_ignored():
    kube = RecordingKube()
    events: list[Event] = []
    reconciler(kube).reconcile(selfguidejob(), [stage_job("generate", owner="old-uid")], events.append)
    assert [c[:3] for c in kube.calls] == [("create", "ConfigMap", "demo-spec"), ("create", "Job", "demo-generate"),
                                           ("patch", "SelfGuideJob", "demo")]
    assert kube.calls[-1][3] == "status"
    assert [e.reason for e in events] == ["Waiting"]


def test_a_finished_stage_outcome_is_read_once_and_the_status_written_once():
    kube = RecordingKube([terminated_pod("generate")])
    subject = reconciler(kube)
    jobs = [stage_job("generate", complete=True)]
    subject.reconcile(selfguidejob(), jobs, lambda event: None)
    assert ("list", "Pod", "batch.kubernetes.io/controller-uid=job-generate") in kube.calls
    status = next(c[4]["status"] for c in kube.calls if c[0] == "patch")
    assert status["generation"]["examples"] == 8 and status["progress"] == "1/3"
    kube.calls.clear()
    subject.reconcile(selfguidejob(), jobs, lambda event: None)  # the watch has shown neither status nor Job
    assert kube.calls == []


def test_a_created_job_counts_until_the_watch_shows_it_or_for_a_minute_at_most():
    kube = RecordingKube()
    now = [NOW]
    subject = Reconciler(kube, OperatorSettings(), Metrics(), clock=lambda: now[0])  # type: ignore[arg-type]
    subject.reconcile(selfguidejob(), [], lambda event: None)
    subject.reconcile(selfguidejob(), [], lambda event: None)
    assert [c[0] for c in kube.calls] == ["create", "create", "patch"]
    now[0] += timedelta(seconds=61)  # never seen: deleted before the watch delivered it
    subject.reconcile(selfguidejob(), [], lambda event: None)
    assert [c[0] for c in kube.calls] == ["create", "create", "patch", "json_patch", "create"]


def test_forget_drops_what_was_remembered():
    kube = RecordingKube()
    subject = reconciler(kube)
    subject.reconcile(selfguidejob(), [], lambda event: None)
    subject.forget(("ns", "demo"))
    kube.calls.clear()
    subject.reconcile(selfguidejob(uid="uid-2"), [], lambda event: None)
    assert [c[0] for c in kube.calls] == ["create", "create", "patch"]


def test_events_are_created_before_the_status_under_names_a_restarted_operator_derives_again():
    first, second = RecordingKube(), RecordingKube()
    Reconciler(first, OperatorSettings(), Metrics(), clock=lambda: NOW).reconcile(selfguidejob(), [])  # type: ignore[arg-type]
    later = NOW + timedelta(seconds=5)  # killed before the status patch: the next operator sees the same status
    Reconciler(second, OperatorSettings(), Metrics(), clock=lambda: later).reconcile(selfguidejob(), [])  # type: ignore[arg-type]
    kinds = [c[1] for c in first.calls]
    assert kinds.index("Event") < kinds.index("SelfGuideJob")
    assert [c for c in first.calls if c[1] == "Event"] == [c for c in second.calls if c[1] == "Event"]


def test_fields_the_new_status_lacks_are_cleared_not_kept():
    body = selfguidejob()
    body["status"] = {"phase": "Pending", "completionTime": "2026-01-01T11:00:00Z", "stage": "generate",
                      "outputs": {"dataset": "pvc://selfguide-data/ns/demo/generate/train.jsonl"}}
    kube = RecordingKube()
    reconciler(kube).reconcile(body, [], lambda event: None)
    status = next(c[4]["status"] for c in kube.calls if c[0] == "patch")
    assert status["completionTime"] is None and status["outputs"] is None and status["stage"] == "generate"
