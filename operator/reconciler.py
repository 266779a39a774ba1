"""Observe, plan, act: one reconcile of one SelfGuideJob, idempotent and safe to run from any trigger."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from selfguide.contract.progress import StageProgress
from selfguide.contract.registry import stage_names
from selfguide.contract.status import Phase, SelfGuideJobStatus
from selfguide_operator.kube import Kube
from selfguide_operator.names import LABEL_STAGE
from selfguide_operator.observed import ChildJob, Observed, Outcome
from selfguide_operator.planner import Action, ApplyObject, CreateJob, DeleteObject, SuspendJob, plan
from selfguide_operator.prometheus_metrics import Metrics
from selfguide_operator.settings import OperatorSettings
from selfguide_operator.status import TERMINAL, Event

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(namespace, name) of a SelfGuideJob."""
EXPECTATION_TTL = timedelta(seconds=60)
"""How long a created Job that the watch has not shown yet counts as existing (it may have been deleted)."""


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
                  post: Callable[[Event], None]) -> None:
        """Reconcile the SelfGuideJob `body`, given the stage Jobs labelled as its children."""
        meta = body["metadata"]
        key: Key = (meta["namespace"], meta["name"])
        with self._locks.setdefault(key, threading.Lock()), self.metrics.reconcile_duration.time():
            written = self._written.get(key)
            job = Observed.from_body(body, written[1] if written and written[0] == meta["uid"] else None)
            result = plan(job, self._children(job, jobs), self.settings, self.clock())
            for action in result.actions:
                self._apply(job, action)
            if result.status != job.status:
                self.kube.merge_patch("SelfGuideJob", job.namespace, job.name,
                                      {"status": result.status.to_camel_dict()}, subresource="status")
                self._written[key] = (job.uid, result.status)
            for event in result.events:
                post(event)
            self.metrics.record(key, job.status, result.status)

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
        children = {}
        for body in jobs:
            child = ChildJob.from_body(body)
            if child.owner_uid != job.uid or child.stage not in stage_names():
                continue
            if child.finished and child.stage not in recorded and job.status.phase not in TERMINAL:
                child = replace(child, outcome=self._outcome(job.namespace, child))
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

    def _apply(self, job: Observed, action: Action) -> None:
        namespace = job.namespace
        match action:
            case ApplyObject(body):
                self.kube.apply(body["kind"], namespace, body)
            case CreateJob(body):
                if created := self.kube.create("Job", namespace, body):
                    stage = created["metadata"]["labels"][LABEL_STAGE]
                    self._created.setdefault(job.key, {})[stage] = (self.clock(), created)
                    log.info("%s/%s: created Job %s", namespace, job.name, body["metadata"]["name"])
            case SuspendJob(name, suspend):
                self.kube.merge_patch("Job", namespace, name, {"spec": {"suspend": suspend}})
                log.info("%s/%s: %s Job %s", namespace, job.name, "suspended" if suspend else "resumed", name)
            case DeleteObject(kind, name):
                if self.kube.delete(kind, namespace, name):
                    log.info("%s/%s: deleted %s %s", namespace, job.name, kind, name)
