"""SelfGuideJobs as the operator leaves them in each situation: statuses computed by its planner."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from selfguide_operator.names import LABEL_STAGE
from selfguide_operator.observed import ChildJob, Observed
from selfguide_operator.planner import plan
from selfguide_operator.settings import OperatorSettings
from tests.operator.helpers import manifest

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
STARTED = "2026-01-01T11:00:00Z"
UID = "0f6e3c36-0000-4000-8000-000000000001"


def _stage_job(stage: str, state: str) -> dict[str, Any]:
    """A stage Job that is `running`, `complete` or `failed` (a permanent error: exit code 3)."""
    status: dict[str, Any] = {"startTime": STARTED}
    if state == "running":
        status["active"] = 1
    else:
        final = {"type": "Complete", "reason": "Completed", "message": ""} if state == "complete" else {
            "type": "Failed", "reason": "PodFailurePolicy", "message": "the stage pod exited with code 3"}
        status |= {"succeeded" if state == "complete" else "failed": 1, "completionTime": STARTED,
                   "conditions": [final | {"status": "True", "lastTransitionTime": STARTED}]}
    return {"metadata": {"name": f"demo-{stage}", "uid": f"uid-{stage}", "labels": {LABEL_STAGE: stage},
                         "ownerReferences": [{"uid": UID, "controller": True}]},
            "spec": {"suspend": False}, "status": status}


def selfguidejob(stages: dict[str, str] | None = None, *, suspend: bool = False,
                 generation: int = 1) -> dict[str, Any]:
    """The SelfGuideJob `demo` (3 stages) with its stage Jobs in `stages` (stage -> state), after one
    reconcile of its generation 1; `stages=None`: no reconcile yet, so no status. `generation` > 1: edited
    since."""
    body = manifest("demo", suspend=suspend)
    body["metadata"] |= {"namespace": "ml", "uid": UID, "generation": 1}
    if stages is not None:
        children = {stage: ChildJob.from_body(_stage_job(stage, state)) for stage, state in stages.items()}
        status = plan(Observed.from_body(body), children, OperatorSettings(), NOW).status
        body["status"] = status.to_camel_dict()
    body["metadata"]["generation"] = generation
    return body


SITUATIONS = {
    "created": selfguidejob(),
    "pending": selfguidejob({}),
    "running": selfguidejob({"generate": "complete", "train": "running"}),
    "edited": selfguidejob({"generate": "running"}, generation=2),
    "succeeded": selfguidejob(dict.fromkeys(("generate", "train", "evaluate"), "complete")),
    "failed": selfguidejob({"generate": "complete", "train": "failed"}),
    "suspended": selfguidejob({"generate": "running"}, suspend=True),
}
