"""What the operator observes, parsed once: a SelfGuideJob, its stage Jobs and their pods' outcomes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from selfguide.contract import termination
from selfguide.contract.status import MAX_MESSAGE, SelfGuideJobStatus
from selfguide.contract.termination import TerminationMessage
from selfguide.manifest import ManifestError, SpecTooLarge, validate_object
from selfguide.spec import API_VERSION, KIND, SelfGuideJobSpec
from selfguide_operator import reasons
from selfguide_operator.names import ANNOTATION_CONFIG_HASH, ANNOTATION_GENERATION, LABEL_STAGE

CLIPPED = " [...] "


def clip(text: str, limit: int = MAX_MESSAGE) -> str:
    """`text` cut to `limit` characters in its middle: its beginning (the first offending fields of a refusal,
    the stage and what it was doing) and its end (where a traceback or log says what went wrong) both stay."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = (limit - len(CLIPPED)) // 2
    return text[:head] + CLIPPED + text[-(limit - len(CLIPPED) - head):]


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class Observed:
    """A SelfGuideJob as the operator sees it. `spec` is None when it fails validation (`problems` says why)."""

    name: str
    namespace: str
    uid: str
    generation: int
    labels: Mapping[str, str]
    deleting: bool
    raw_spec: Mapping[str, Any]
    spec: SelfGuideJobSpec | None
    problems: str | None
    status: SelfGuideJobStatus
    invalid_reason: str = reasons.INVALID_SPEC
    """The failure reason when `spec` is None: SpecTooLarge when the spec cannot fit its ConfigMap."""

    @classmethod
    def from_body(cls, body: Mapping[str, Any], status: SelfGuideJobStatus | None = None) -> Observed:
        """Parse a SelfGuideJob; `status` (the last one this operator wrote) wins over the body's, which may
        lag behind it."""
        meta = body["metadata"]
        raw_spec = body.get("spec") or {}
        spec, problems, invalid_reason = None, None, reasons.INVALID_SPEC
        try:
            spec = validate_object(_manifest(meta["name"], meta["namespace"], raw_spec)).spec
        except ManifestError as error:
            problems = "; ".join(map(str, error.problems))
            if isinstance(error, SpecTooLarge):
                invalid_reason = reasons.SPEC_TOO_LARGE
        if status is None:
            try:
                status = SelfGuideJobStatus.model_validate(body.get("status") or {})
            except ValidationError:  # written by something else than this operator: start afresh
                status = SelfGuideJobStatus()
        return cls(
            name=meta["name"], namespace=meta["namespace"], uid=meta["uid"], generation=meta.get("generation", 0),
            labels=meta.get("labels") or {}, deleting=bool(meta.get("deletionTimestamp")), raw_spec=raw_spec,
            spec=spec, problems=problems, status=status, invalid_reason=invalid_reason,
        )

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    def manifest(self) -> dict[str, Any]:
        """What stage pods read: the spec with its name and namespace (no status, labels or annotations)."""
        return _manifest(self.name, self.namespace, self.raw_spec)


def _manifest(name: str, namespace: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace},
            "spec": dict(spec)}


@dataclass(frozen=True)
class Outcome:
    """A stage pod's termination message: the one-line JSON `selfguide stage` writes (the stage contract's
    `TerminationMessage`), or, after a crash, its last log lines."""

    ok: bool
    error: str | None = None
    message: TerminationMessage | None = None

    @classmethod
    def parse(cls, text: str) -> Outcome:
        message = termination.parse(text)
        if message is None:
            return cls(ok=False, error=clip(text) or None)
        return cls(ok=message.ok, error=clip(message.error) if message.error else None, message=message)


@dataclass(frozen=True)
class Waiting:
    """Why a stage Job's pod does not run: the pod's PodScheduled=False or container waiting reason, or the Job
    controller's FailedCreate Event when no pod could be created."""

    reason: str
    message: str
    since: datetime | None = None
    """Since when (the pending pod's creation, else the Job's start)."""

    @property
    def text(self) -> str:
        return clip(f"{self.reason}: {self.message}" if self.message else self.reason)


@dataclass(frozen=True)
class ChildJob:
    """A stage's batch/v1 Job, reduced to what planning needs."""

    name: str
    stage: str
    owner_uid: str | None
    uid: str
    suspended: bool
    active: int
    succeeded: int
    failed: int
    start_time: datetime | None
    completion_time: datetime | None
    finished: Literal["Complete", "Failed"] | None
    reason: str | None
    message: str | None
    ready: int = 0
    """Pods of the Job that are ready (running)."""
    created: datetime | None = None
    deleting: bool = False
    outcome: Outcome | None = None
    """Filled in by the reconciler for a finished Job whose outcome is not in the status yet."""
    waiting: Waiting | None = None
    """Filled in by the reconciler for an unfinished, unsuspended Job none of whose pods runs."""
    generation: int | None = None
    """The SelfGuideJob's generation the Job was created for (its annotation)."""
    config_hash: str | None = None
    """The hash of the spec sections the stage reads, when the Job was created (its annotation)."""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ChildJob:
        meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        owner = next((ref["uid"] for ref in meta.get("ownerReferences") or [] if ref.get("controller")), None)
        uncounted = status.get("uncountedTerminatedPods") or {}  # finished pods not yet in the counts
        final = next((c for c in status.get("conditions") or []
                      if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"), None)
        return cls(
            name=meta["name"], stage=(meta.get("labels") or {}).get(LABEL_STAGE, ""), owner_uid=owner,
            uid=meta["uid"], suspended=bool(spec.get("suspend")), active=status.get("active", 0),
            succeeded=status.get("succeeded", 0) + len(uncounted.get("succeeded") or []),
            failed=status.get("failed", 0) + len(uncounted.get("failed") or []),
            start_time=_time(status.get("startTime")),
            completion_time=_time(status.get("completionTime") or (final or {}).get("lastTransitionTime")),
            finished=final["type"] if final else None, reason=(final or {}).get("reason"),
            message=(final or {}).get("message"), ready=status.get("ready") or 0,
            created=_time(meta.get("creationTimestamp")), deleting=bool(meta.get("deletionTimestamp")),
            generation=_int((meta.get("annotations") or {}).get(ANNOTATION_GENERATION)),
            config_hash=(meta.get("annotations") or {}).get(ANNOTATION_CONFIG_HASH),
        )

    @property
    def attempts(self) -> int:
        return self.active + self.succeeded + self.failed
