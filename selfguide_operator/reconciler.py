"""Observe, plan, act: one reconcile of one SelfGuideJob, idempotent and safe to run from any trigger."""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from selfguide.contract.progress import StageProgress
from selfguide.contract.registry import stage_names
from selfguide.contract.status import Phase, SelfGuideJobStatus
from selfguide.spec import API_VERSION, KIND
from selfguide_operator import reasons
from selfguide_operator.kube import ApiError, Kube
from selfguide_operator.names import LABEL_STAGE, MANAGED_BY
from selfguide_operator.observed import ChildJob, Observed, Outcome, Waiting, clip
from selfguide_operator.planner import Action, ApplyObject, CreateJob, DeleteObject, SuspendJob, plan
from selfguide_operator.prometheus_metrics import Metrics
from selfguide_operator.settings import OperatorSettings
from selfguide_operator.status import TERMINAL, Event, Verdict, with_reconcile_error

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(namespace, name) of a SelfGuideJob."""
HOSTNAME = socket.gethostname()
EXPECTATION_TTL = timedelta(seconds=60)
"""How long a created Job that the watch has not shown yet counts as existing (it may have been deleted)."""
STARTING = timedelta(seconds=5)
"""A stage Job younger than this whose pod is not ready yet is simply starting: its pods are not listed (a
Job event announces the pod running; the resync timer lists them if it does not)."""


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Reconciler:
    """Brings a SelfGuideJob's children and status in line with its spec.

    Reconciles of one SelfGuideJob never overlap (a lock per job). The status this operator wrote last is
    remembered, because the watch may deliver it later than a child Job's event that triggers the next reconcile.
    """

    def __init__(self, kube: Kube, settings: OperatorSettings, metrics: Metrics,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self._locks: dict[Key, threading.Lock] = {}
        self._written: dict[Key, tuple[str, SelfGuideJobStatus]] = {}
        self._created: dict[Key, dict[str, tuple[datetime, dict[str, Any]]]] = {}
        """Stage Jobs created but not seen in the index yet, by stage (an "expectation", as in the Job controller):
        counted as children meanwhile, so that the next trigger does not try to create them again."""

    def reconcile(self, body: Mapping[str, Any], jobs: Iterable[Mapping[str, Any]],
                  post: Callable[[Event], None] | None = None) -> None:
        """Reconcile the SelfGuideJob `body`, given the stage Jobs labelled as its children. Events are posted
        through `post` when given, else created by this reconciler under names derived from the recorded status
        (so an Event posted before a crash is not posted twice, and none is lost)."""
        meta = body["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        with self._locks.setdefault(key, threading.Lock()), self.metrics.reconcile_duration.time():
            written = self._written.get(key)
            job = Observed.from_body(body, written[1] if written and written[0] == meta["uid"] else None)
            try:
                self._reconcile(job, body.get("status") or {}, jobs, post)
            except Exception as error:
                self._report_error(job, error, post)
                raise

    def _reconcile(self, job: Observed, recorded: Mapping[str, Any], jobs: Iterable[Mapping[str, Any]],
                   post: Callable[[Event], None] | None) -> None:
        now = self.clock()
        children = self._children(job, jobs)
        result = plan(job, children, self.settings, now)
        try:
            for action in result.actions:
                self._apply(job, action)
        except ChildRefused as refused:
            log.warning("%s/%s: %s: %s", job.namespace, job.name, refused.reason, refused.message)
            failure = Verdict(Phase.FAILED, refused.reason, clip(refused.message))
            result = plan(job, children, self.settings, now, failure=failure)
            for action in result.actions:
                self._apply(job, action)
        self._post(job, result.events, post)  # before the status: a crash in between re-posts the same names
        if result.status != job.status:
            document = result.status.to_camel_dict()
            patch = _with_nulls(_with_nulls(document, recorded), job.status.to_camel_dict())
            self.kube.merge_patch("SelfGuideJob", job.namespace, job.name, {"status": patch}, subresource="status")
            self._written[job.key] = (job.uid, result.status)
        self.metrics.record(job.key, job.status, result.status)

    def _post(self, job: Observed, events: list[Event], post: Callable[[Event], None] | None) -> None:
        if post is not None:
            for event in events:
                post(event)
            return
        recorded = hashlib.sha256(job.status.model_dump_json().encode()).hexdigest()
        for event in events:
            identity = event.once or f"{recorded}/{event.key}"
            digest = hashlib.sha256(f"{job.uid}/{identity}".encode()).hexdigest()[:16]
            self.kube.create("Event", job.namespace, event_body(job, event, f"{job.name}.{digest}", self.clock()))

    def _report_error(self, job: Observed, error: Exception, post: Callable[[Event], None] | None) -> None:
        """Make a failed reconcile visible: a Warning Event and the ReconcileError condition (best effort: the
        API server may be what fails)."""
        message = clip(f"reconcile failed, will retry: {error}")
        try:
            self._post(job, [Event("Warning", reasons.RECONCILE_ERROR, message, subject=message)], post)
            status = with_reconcile_error(job.status, message, job.generation, self.clock())
            self.kube.merge_patch("SelfGuideJob", job.namespace, job.name,
                                  {"status": {"conditions": status.to_camel_dict()["conditions"]}},
                                  subresource="status")
            self._written[job.key] = (job.uid, status)
        except Exception as reporting:  # noqa: BLE001 - the original error is raised by the caller
            log.warning("%s/%s: cannot report the reconcile error: %s", job.namespace, job.name, reporting)

    def record_progress(self, namespace: str, name: str, stage: str, progress: StageProgress) -> bool:
        """Put a stage pod's progress report into the stage's status; False when the stage is not running."""
        key: Key = (namespace, name)
        with self._locks.setdefault(key, threading.Lock()):
            written = self._written.get(key)
            if written is not None:
                uid, status = written
            else:  # nothing written since this operator started: read the status the last one wrote
                body = self.kube.request("GET", self.kube.path("SelfGuideJob", namespace, name))
                uid = body["metadata"]["uid"]
                status = Observed.from_body(body).status
            stages = list(status.stages)
            index = next((i for i, s in enumerate(stages) if s.name == stage
                          and s.phase in (Phase.RUNNING, Phase.PENDING)), None)
            if index is None:
                return False
            stages[index] = stages[index].model_copy(update={"progress": progress})
            status = status.model_copy(update={"stages": stages})
            self.kube.merge_patch("SelfGuideJob", namespace, name,
                                  {"status": {"stages": [s.to_camel_dict() for s in stages]}}, subresource="status")
            self._written[key] = (uid, status)
        return True

    def forget(self, key: Key) -> None:
        """The SelfGuideJob is gone."""
        self._written.pop(key, None)
        self._created.pop(key, None)
        self._locks.pop(key, None)
        self.metrics.forget(key)

    def _children(self, job: Observed, jobs: Iterable[Mapping[str, Any]]) -> dict[str, ChildJob]:
        """The stage Jobs this SelfGuideJob controls (not a namesake's being deleted), with the outcome of
        those that finished since the status last recorded them."""
        recorded = {s.name for s in job.status.stages if s.phase in TERMINAL}
        running = {s.name for s in job.status.stages if s.phase is Phase.RUNNING}
        children = {}
        for body in jobs:
            child = ChildJob.from_body(body)
            if child.owner_uid != job.uid or child.stage not in stage_names():
                continue
            if child.finished and child.stage not in recorded and job.status.phase not in TERMINAL:
                child = replace(child, outcome=self._outcome(job.namespace, child))
            elif (not child.finished and not child.suspended and not child.deleting and not child.ready
                  and job.status.phase not in TERMINAL):
                young = (child.created is not None and self.clock() - child.created < STARTING
                         and child.stage not in running and not child.succeeded and not child.failed)
                waiting = (Waiting(reasons.STARTING, "the stage's pod is starting", child.created) if young
                           else self._waiting(job.namespace, child))
                child = replace(child, waiting=waiting)
            children[child.stage] = child
        expected = self._created.get(job.key, {})
        for stage, (created, body) in list(expected.items()):
            if stage in children or self.clock() - created > EXPECTATION_TTL:
                del expected[stage]
            elif body["metadata"]["ownerReferences"][0]["uid"] == job.uid:
                children[stage] = ChildJob.from_body(body)
        return children

    def _outcome(self, namespace: str, child: ChildJob) -> Outcome | None:
        """The termination message of the Job's last finished pod."""
        finished = []
        for pod in self.kube.list("Pod", namespace, f"batch.kubernetes.io/controller-uid={child.uid}"):
            for container in (pod.get("status") or {}).get("containerStatuses") or []:
                terminated = (container.get("state") or {}).get("terminated")
                if terminated and terminated.get("message"):
                    finished.append((terminated.get("finishedAt") or "", terminated["message"]))
        return Outcome.parse(max(finished)[1]) if finished else None

    def _waiting(self, namespace: str, child: ChildJob) -> Waiting | None:
        """Why none of the Job's pods runs, or None when one runs (or ran: the Job is about to finish)."""
        pods = self.kube.list("Pod", namespace, f"batch.kubernetes.io/controller-uid={child.uid}")
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        if "Running" in phases or "Succeeded" in phases:
            return None
        pending = sorted((p for p in pods if (p.get("status") or {}).get("phase") == "Pending"
                          and not p["metadata"].get("deletionTimestamp")),
                         key=lambda p: p["metadata"].get("creationTimestamp") or "")
        if pending:
            return _pod_waiting(pending[-1])
        if pods:  # a failed pod, its replacement not created yet
            return None
        try:
            refused = self.kube.list("Event", namespace,
                                     field_selector=f"involvedObject.uid={child.uid},reason={reasons.FAILED_CREATE}")
        except ApiError as error:  # an install that may not list Events: the pod is missing, reason unknown
            log.debug("cannot list the Events of Job %s: %s", child.name, error)
            refused = []
        if refused:
            last = max(refused, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
            return Waiting(reasons.FAILED_CREATE, last.get("message") or "", child.start_time or child.created)
        return Waiting(reasons.NO_POD, "the Job controller has not created a pod yet", child.start_time or child.created)

    def _apply(self, job: Observed, action: Action) -> None:
        namespace = job.namespace
        match action:
            case ApplyObject(body) if body["kind"] == "ConfigMap":
                self._apply_config_map(job, body)
            case ApplyObject(body):  # an object only this job ever writes (spec.serving's ModelAdapter)
                self.kube.apply(body["kind"], namespace, body)
            case CreateJob(body):
                if created := self._create_job(job, body):
                    stage = created["metadata"]["labels"][LABEL_STAGE]
                    self._created.setdefault(job.key, {})[stage] = (self.clock(), created)
            case SuspendJob(name, suspend):
                self.kube.merge_patch("Job", namespace, name, {"spec": {"suspend": suspend}})
                log.info("%s/%s: %s Job %s", namespace, job.name, "suspended" if suspend else "resumed", name)
            case DeleteObject(kind, name):
                if self.kube.delete(kind, namespace, name):
                    log.info("%s/%s: deleted %s %s", namespace, job.name, kind, name)

    def _create_job(self, job: Observed, body: dict[str, Any]) -> dict[str, Any] | None:
        """Create a stage Job; an existing one is used only if this SelfGuideJob owns it."""
        name = body["metadata"]["name"]
        try:
            created = self.kube.create("Job", job.namespace, body)
        except ApiError as error:
            if error.permanent:
                reason = reasons.SPEC_TOO_LARGE if error.status == 413 else reasons.INVALID_STAGE_JOB
                raise ChildRefused(reason, f"the API refused stage Job {name}: {error.message}") from error
            raise
        if created is not None:
            log.info("%s/%s: created Job %s", job.namespace, job.name, name)
            return created
        existing = self.kube.list("Job", job.namespace, field_selector=f"metadata.name={name}")
        if not existing:
            return None  # deleted meanwhile: the next reconcile creates it
        owner = _controller(existing[0])
        if owner.get("uid") == job.uid:
            return existing[0]
        if _namesake(owner, job) or existing[0]["metadata"].get("deletionTimestamp"):
            log.info("%s/%s: Job %s of a deleted namesake awaits garbage collection", job.namespace, job.name, name)
            return None
        raise name_conflict("Job", name)

    def _apply_config_map(self, job: Observed, body: dict[str, Any]) -> None:
        """Create the spec ConfigMap, or update its data if this SelfGuideJob owns it (tested in the same request
        that changes it: a JSON patch whose `test` fails changes nothing). Never adopts another's."""
        name, namespace = body["metadata"]["name"], job.namespace
        owned = [{"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": job.uid}]
        try:
            if any(s.job_name for s in job.status.stages):  # a later stage: ours exists, update it in one request
                try:
                    self.kube.json_patch("ConfigMap", namespace, name,
                                         [*owned, {"op": "replace", "path": "/data", "value": body["data"]}])
                    return
                except ApiError as error:
                    if error.status == 422:  # not ours, or our new data refused: the test alone tells which
                        self._test_owned(job, name, owned)
                        raise
                    if error.status != 404:
                        raise
            if self.kube.create("ConfigMap", namespace, body) is not None:
                return
            self._test_owned(job, name, owned)
            self.kube.merge_patch("ConfigMap", namespace, name, {"data": body["data"]})
        except ApiError as error:
            if error.permanent:
                too_large = error.status == 413 or "must have at most" in error.message or "Too long" in error.message
                raise ChildRefused(reasons.SPEC_TOO_LARGE if too_large else reasons.INVALID_SPEC_CONFIG_MAP,
                                   f"the API refused ConfigMap {name}: {error.message}") from error
            raise

    def _test_owned(self, job: Observed, name: str, owned: list[dict[str, Any]]) -> None:
        """Return if this SelfGuideJob owns ConfigMap `name`; else raise (see `_not_ours`)."""
        try:
            self.kube.json_patch("ConfigMap", job.namespace, name, owned)
        except ApiError as error:
            if error.status != 422:
                raise
            self._not_ours("ConfigMap", job, name)

    def _not_ours(self, kind: str, job: Observed, name: str) -> None:
        """`kind` `name` exists and this SelfGuideJob does not own it: a deleted namesake's (wait for the garbage
        collector), or someone else's (NameConflict)."""
        try:
            self.kube.json_patch(kind, job.namespace, name, [
                {"op": "test", "path": "/metadata/ownerReferences/0/kind", "value": KIND},
                {"op": "test", "path": "/metadata/ownerReferences/0/name", "value": job.name}])
        except ApiError as error:
            if error.status != 422:
                raise
            raise name_conflict(kind, name) from error
        raise NamesakePending(f"{kind} {name} belongs to a deleted SelfGuideJob {job.name}; "
                              "waiting for the garbage collector")


class ChildRefused(Exception):
    """The API refused a child object for good: the job fails with `reason` and the API's message."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


def name_conflict(kind: str, name: str) -> ChildRefused:
    """A child's name taken by an object this SelfGuideJob does not own."""
    return ChildRefused(reasons.NAME_CONFLICT, f"{kind} {name} exists and does not belong to this SelfGuideJob; "
                                        f"rename the SelfGuideJob or delete that {kind}")


class NamesakePending(Exception):
    """A child's name is still taken by an object of a deleted SelfGuideJob of the same name (retried)."""


def _controller(body: Mapping[str, Any]) -> dict[str, Any]:
    return next((ref for ref in body["metadata"].get("ownerReferences") or [] if ref.get("controller")), {})


def _namesake(owner: Mapping[str, Any], job: Observed) -> bool:
    return owner.get("kind") == KIND and owner.get("name") == job.name


def _pod_waiting(pod: Mapping[str, Any]) -> Waiting:
    """Why a Pending pod does not run: not scheduled (PodScheduled=False), or a container waiting."""
    status = pod.get("status") or {}
    since = _time(pod["metadata"].get("creationTimestamp"))
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
    if scheduled is not None and scheduled.get("status") == "False":
        return Waiting(scheduled.get("reason") or reasons.UNSCHEDULABLE, scheduled.get("message") or "", since)
    for container in status.get("containerStatuses") or []:
        if waiting := (container.get("state") or {}).get("waiting"):
            return Waiting(_reason(waiting.get("reason")), waiting.get("message") or "", since)
    return Waiting(reasons.POD_PENDING, f"pod {pod['metadata']['name']} is pending", since)


def _reason(text: str | None) -> str:
    """A condition reason (CamelCase) from a container's waiting reason."""
    cleaned = re.sub(r"[^A-Za-z0-9]", "", text or "")
    return cleaned if cleaned[:1].isalpha() else reasons.POD_PENDING


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _with_nulls(new: dict[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning `old` into `new`: fields `new` lacks are set to null (a merge patch that leaves a
    field out keeps its old value)."""
    patch = dict(new)
    for key, value in old.items():
        if key not in new:
            patch[key] = None
        elif isinstance(value, Mapping) and isinstance(new[key], dict):
            patch[key] = _with_nulls(new[key], value)
    return patch


def event_body(job: Observed, event: Event, name: str, now: datetime) -> dict[str, Any]:
    """A core/v1 Event about the SelfGuideJob."""
    stamp = now.isoformat().replace("+00:00", "Z")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": job.namespace},
        "involvedObject": {"apiVersion": API_VERSION, "kind": KIND, "name": job.name, "namespace": job.namespace,
                           "uid": job.uid},
        "type": event.type, "reason": event.reason, "message": clip(event.message),
        "source": {"component": MANAGED_BY}, "reportingComponent": MANAGED_BY, "reportingInstance": HOSTNAME,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }
