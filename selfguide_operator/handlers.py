"""kopf handlers: every trigger (create, resume, update, a stage Job's change, a periodic timer) runs the same
level-triggered reconcile. Two in-memory indexes give the reconcile what it needs without extra API reads."""

from __future__ import annotations

import copy
import socket
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from selfguide.spec import GROUP, PLURAL, VERSION
from selfguide_operator.kopf_storage import TolerantDiffBaseStorage, TolerantProgressStorage
from selfguide_operator.names import LABEL_JOB, MANAGED_BY
from selfguide_operator.reconciler import Reconciler
from selfguide_operator.settings import OperatorSettings

JobIndex = kopf.Index[tuple[str, str], dict[str, Any]]
"""kopf's in-memory index of a kind: (namespace, job name) -> the objects' fields the reconciler reads."""

SELFGUIDEJOBS = (GROUP, VERSION, PLURAL)
JOBS = ("batch", "v1", "jobs")
CHILD = {LABEL_JOB: kopf.PRESENT}


def _selfguidejob(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a reconcile reads of a SelfGuideJob (a copy: kopf's bodies are views of the latest event)."""
    return copy.deepcopy({key: body[key] for key in ("apiVersion", "kind", "metadata", "spec", "status")
                          if key in body})


def _stage_job(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a reconcile reads of a stage Job (not its pod template)."""
    meta = body["metadata"]
    return copy.deepcopy({
        "metadata": {key: meta[key] for key in ("name", "uid", "labels", "annotations", "ownerReferences",
                                                       "creationTimestamp", "deletionTimestamp") if key in meta},
        "spec": {"suspend": body.get("spec", {}).get("suspend")},
        "status": body.get("status") or {},
    })


REQUEST_TIMEOUT_SECONDS = 60
"""kopf's own API requests (patches of finalizers, annotations): never wait forever."""
TTL_GRACE_SECONDS = 120
"""How long past a finished job's TTL the safety-net timer keeps checking that its children are gone."""


def _needs_resync(status: Mapping[str, Any], spec: Mapping[str, Any], **_: Any) -> bool:
    """Unfinished jobs, and finished ones until a little after their TTL deleted the children (an operator
    that was down at that moment catches up when it resumes the job on start)."""
    if status.get("phase") not in ("Succeeded", "Failed"):
        return True
    ttl, finished = spec.get("ttlSecondsAfterFinished"), status.get("completionTime")
    if ttl is None or finished is None:
        return False
    deadline = datetime.fromisoformat(finished) + timedelta(seconds=ttl + TTL_GRACE_SECONDS)
    return datetime.now(UTC) < deadline


def register(registry: kopf.OperatorRegistry, reconciler: Reconciler, operator_settings: OperatorSettings) -> None:
    """Register the operator's handlers and kopf settings in `registry`."""

    @kopf.on.startup(id="configure", registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.finalizer = f"{GROUP}/finalizer"
        settings.persistence.progress_storage = TolerantProgressStorage(prefix=GROUP)
        # The last handled spec is kept in an annotation (256 KiB for all of them): leave out the fields that
        # may be large and need no update handling (the task is immutable; stages read the evaluation set from
        # the spec ConfigMap, which is applied again before every stage; pod settings, passed through to
        # Kubernetes unbounded, count when the next stage Job is built).
        settings.persistence.diffbase_storage = TolerantDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration",
            ignored_fields=["spec.task", "spec.evaluation", "spec.pod", "spec.stages"])
        settings.posting.reporting_component = MANAGED_BY
        settings.posting.reporting_instance = socket.gethostname()
        settings.posting.event_name_prefix = "selfguide-"
        settings.watching.label_selectors[JOBS] = LABEL_JOB  # watch only our Jobs, filtered by the API server
        settings.execution.max_workers = operator_settings.max_workers
        settings.networking.request_timeout = REQUEST_TIMEOUT_SECONDS  # watches keep their own timeouts
        settings.networking.connect_timeout = 10

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)  # the same kubeconfig / service account as our own client

    @kopf.index(*SELFGUIDEJOBS, id="selfguidejobs", registry=registry)  # type: ignore[arg-type]
    def selfguidejobs(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
        return {(namespace, name): _selfguidejob(body)}

    @kopf.index(*JOBS, labels=CHILD, id="stage_jobs", registry=registry)  # type: ignore[arg-type]
    def stage_jobs(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
        return {(namespace, labels[LABEL_JOB]): _stage_job(body)}

    def reconcile(body: Mapping[str, Any], jobs: JobIndex) -> None:
        meta = body["metadata"]
        try:  # the reconciler posts the Events itself, before the status that records them
            reconciler.reconcile(body, jobs.get((meta["namespace"], meta["name"]), ()))
        except Exception:
            reconciler.metrics.reconcile_errors.inc()
            raise

    @kopf.on.resume(*SELFGUIDEJOBS, id="reconcile", registry=registry)
    @kopf.on.create(*SELFGUIDEJOBS, id="reconcile", registry=registry)
    @kopf.on.update(*SELFGUIDEJOBS, id="reconcile", registry=registry)  # type: ignore[arg-type]
    def selfguidejob_changed(body: kopf.Body, stage_jobs: JobIndex, **_: Any) -> None:
        reconcile(body, stage_jobs)

    @kopf.timer(*SELFGUIDEJOBS, id="resync", interval=operator_settings.resync_seconds,  # type: ignore[arg-type]
                when=_needs_resync, registry=registry)
    def resync(body: kopf.Body, stage_jobs: JobIndex, **_: Any) -> None:
        reconcile(body, stage_jobs)

    @kopf.on.event(*JOBS, labels=CHILD, id="stage_job_changed", registry=registry)  # type: ignore[arg-type]
    def stage_job_changed(namespace: str, labels: kopf.Labels, selfguidejobs: JobIndex,
                          stage_jobs: JobIndex, **_: Any) -> None:
        for parent in selfguidejobs.get((namespace, labels[LABEL_JOB]), ()):
            reconcile(parent, stage_jobs)

    @kopf.on.event(*SELFGUIDEJOBS, id="forget_deleted", registry=registry)  # type: ignore[arg-type]
    def selfguidejob_deleted(type: str, namespace: str, name: str, **_: Any) -> None:
        if type == "DELETED":
            reconciler.forget((namespace, name))

    @kopf.on.probe(id="selfguidejobs_tracked", registry=registry)  # type: ignore[arg-type]
    def tracked(selfguidejobs: JobIndex, **_: Any) -> int:
        return len(selfguidejobs)
