"""The operator's decisions, as one pure function: `plan(job, children, settings, now)` returns the status to
write, the changes to make to child objects and the Events to post. No I/O: every rule is unit-tested directly."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from selfguide.contract.registry import stages_for
from selfguide.contract.results import EvaluateResult
from selfguide.contract.status import Phase, SelfGuideJobStatus, StageStatus
from selfguide.spec import SelfGuideJobSpec
from selfguide_operator import reasons
from selfguide_operator.builders import kueue_managed, spec_config_map, stage_job
from selfguide_operator.generations import observed_generation
from selfguide_operator.names import spec_config_map_name, stage_job_name
from selfguide_operator.observed import ChildJob, Observed, clip
from selfguide_operator.policy import refusals
from selfguide_operator.progress import carried_progress
from selfguide_operator.publication import gate_failure, model_adapter_body, outputs, warnings
from selfguide_operator.settings import OperatorSettings
from selfguide_operator.status import (
    TERMINAL,
    Event,
    StageReport,
    Verdict,
    conditions,
    stage_report,
    transition_events,
)

FAILURE_REASONS = {reasons.POD_FAILURE_POLICY: reasons.PERMANENT_ERROR,
                   reasons.BACKOFF_LIMIT_EXCEEDED: reasons.BACKOFF_LIMIT_EXCEEDED,
                   reasons.DEADLINE_EXCEEDED: reasons.DEADLINE_EXCEEDED}
"""A failed stage Job's condition reason -> the SelfGuideJob's (PodFailurePolicy: exit code 2 or 3)."""


@dataclass(frozen=True)
class ApplyObject:
    """Create or update a child (server-side apply): the spec ConfigMap."""

    body: dict[str, Any]


@dataclass(frozen=True)
class CreateJob:
    """Create a stage Job; one that already exists under its name is left alone."""

    body: dict[str, Any]


@dataclass(frozen=True)
class SuspendJob:
    name: str
    suspend: bool


@dataclass(frozen=True)
class DeleteObject:
    """Delete a child; its pods go with it (background propagation)."""

    kind: str
    name: str


Action = ApplyObject | CreateJob | SuspendJob | DeleteObject


@dataclass(frozen=True)
class Plan:
    status: SelfGuideJobStatus
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


def plan(job: Observed, children: Mapping[str, ChildJob], settings: OperatorSettings, now: datetime,
         failure: Verdict | None = None) -> Plan:
    """Next steps for `job`, given the stage Jobs it controls, by stage name. `failure` (the reconciler's, when
    the API refused a child object) fails the job like any other reason."""
    old = job.status
    if job.deleting:
        return Plan(old)
    if old.phase in TERMINAL:
        return Plan(old.model_copy(update={"observed_generation": observed_generation(
            job.generation, job.spec, old.stages)}), _stop_unfinished(children) + _cleanup_after_ttl(job, children, now))

    spec = job.spec
    names = [d.name for d in stages_for(spec)] if spec is not None else [s.name for s in old.stages]
    results = {stage: stage_report(stage, child.outcome) for stage, child in children.items()
               if child.finished == "Complete" and child.outcome is not None}
    previous = {s.name: s for s in old.stages}
    entries = [_stage_entry(stage, children.get(stage), previous.get(stage), spec.suspend if spec else False,
                            results[stage].message if stage in results else None)
               for stage in names]
    start = old.start_time or min((e.start_time for e in entries if e.start_time), default=None)
    actions: list[Action] = []
    deadline = spec.active_deadline_seconds if spec else None
    waiting = _pending_too_long(spec, entries, children, now, settings.pending_timeout_seconds) if spec else None

    if failure is not None:
        verdict = failure
    elif spec is None:
        verdict = Verdict(Phase.FAILED, job.invalid_reason, clip(job.problems or "the spec is invalid"))
    elif refused := refusals(spec, settings, job.namespace):  # asks for more than the operator's policy allows
        verdict = Verdict(Phase.FAILED, reasons.INVALID_SPEC, clip("; ".join(refused)))
    elif failed := next((e for e in entries if e.phase is Phase.FAILED), None):
        reason = FAILURE_REASONS.get(children[failed.name].reason or "", reasons.STAGE_FAILED)
        verdict = Verdict(Phase.FAILED, reason, clip(f"stage {failed.name} failed: {failed.message}"))
    elif deadline is not None and start is not None and now >= start + timedelta(seconds=deadline):
        verdict = Verdict(Phase.FAILED, reasons.DEADLINE_EXCEEDED, f"the job ran longer than activeDeadlineSeconds={deadline}")
    elif waiting is not None:
        verdict = waiting
    elif all(e.phase is Phase.SUCCEEDED for e in entries):
        evaluation = _evaluation(results, old)
        verdict = gate_failure(spec, evaluation) or Verdict(
            Phase.SUCCEEDED, reasons.COMPLETED, clip(f"all {len(entries)} stages succeeded{warnings(evaluation)}"))
        if verdict.phase is Phase.SUCCEEDED and (adapter := model_adapter_body(job)) is not None:
            actions = [ApplyObject(adapter)]  # spec.serving: hand the published adapter to AIBrix
    else:
        index, current = next((i, e) for i, e in enumerate(entries) if e.phase is not Phase.SUCCEEDED)
        actions = _advance(job, current.name, children.get(current.name), settings, start, now)
        if created := next((a for a in actions if isinstance(a, CreateJob)), None):
            child = ChildJob.from_body(created.body | {"metadata": created.body["metadata"] | {"uid": ""}})
            entries[index] = current.model_copy(update={"job_name": stage_job_name(job.name, current.name),
                                                        "generation": child.generation,
                                                        "config_hash": child.config_hash})
        verdict = _verdict_while_running(spec.suspend, current, children.get(current.name), entries)
    if verdict.phase is Phase.FAILED:  # whatever the reason: stop what still runs, keep the history
        stopped = "deadline exceeded" if verdict.reason == reasons.DEADLINE_EXCEEDED else verdict.reason
        entries = [e if e.phase in TERMINAL or e.job_name is None and e.name not in children
                   else e.model_copy(update={"phase": Phase.FAILED, "message": f"stopped: {stopped}"})
                   for e in entries]  # stages that never started stay Pending
        actions = _stop_unfinished(children)
    fields = {name: value for result in results.values() for name, value in result.fields.items()}
    jobs = {stage: child.uid for stage, child in children.items()}
    return _plan(job, entries, verdict, start, fields, settings, now, actions, jobs)


def _stop_unfinished(children: Mapping[str, ChildJob]) -> list[Action]:
    """Delete the stage Jobs that still run or wait (a failed job must not keep using GPUs)."""
    return [DeleteObject("Job", c.name) for c in children.values() if c.finished is None and not c.deleting]


def _pending_too_long(spec: SelfGuideJobSpec, entries: list[StageStatus], children: Mapping[str, ChildJob],
                      now: datetime, default: int | None) -> Verdict | None:
    """`spec.pendingTimeoutSeconds` (else the operator's `default`) passed while the current stage's pod could not
    start."""
    timeout = spec.pending_timeout_seconds or default
    current = next((e for e in entries if e.phase is not Phase.SUCCEEDED), None)
    child = children.get(current.name) if current else None
    if timeout is None or current is None or child is None or child.waiting is None or child.suspended:
        return None
    since = child.waiting.since or child.start_time or child.created
    if since is None or now < since + timedelta(seconds=timeout):
        return None
    return Verdict(Phase.FAILED, reasons.PENDING_TIMEOUT, clip(
        f"stage {current.name} did not start within pendingTimeoutSeconds={timeout}: {child.waiting.text}"))


def _evaluation(results: Mapping[str, StageReport], old: SelfGuideJobStatus) -> EvaluateResult | None:
    """The evaluation reported now, else the one the status holds."""
    reported = [value for report in results.values() for value in report.fields.values()
                if isinstance(value, EvaluateResult)]
    return reported[0] if reported else old.evaluation


def _stage_entry(stage: str, child: ChildJob | None, previous: StageStatus | None, suspend: bool,
                 summary: str | None) -> StageStatus:
    """A stage's status from its Job; a succeeded stage whose Job is gone keeps what the status recorded.
    A stage is Running only while its pod runs; otherwise its message says why it waits."""
    if child is None:
        return previous if previous is not None and previous.phase is Phase.SUCCEEDED else StageStatus(name=stage)
    message = previous.message if previous is not None else None
    if child.finished == "Complete":
        phase, message = Phase.SUCCEEDED, summary or message
    elif child.finished == "Failed":
        phase = Phase.FAILED
        message = (child.outcome.error if child.outcome else None) or message or child.message
    elif child.suspended:  # spec.suspend, or a queue (Kueue) that has not admitted the Job yet
        phase = Phase.SUSPENDED if suspend else Phase.PENDING
        message = message if suspend else "queued: the stage Job is suspended until it is admitted"
    elif child.waiting is not None:
        phase, message = Phase.PENDING, child.waiting.text
    else:
        phase = Phase.RUNNING if child.start_time else Phase.PENDING
        message = None if previous is None or previous.phase is Phase.PENDING else message
    return StageStatus(name=stage, phase=phase, job_name=child.name, start_time=child.start_time,
                       completion_time=child.completion_time, attempts=child.attempts,
                       message=clip(message) if message else None, progress=carried_progress(phase, previous),
                       generation=child.generation, config_hash=child.config_hash)


def _advance(job: Observed, stage: str, child: ChildJob | None, settings: OperatorSettings,
             start: datetime | None, now: datetime) -> list[Action]:
    """Make the current stage's Job exist, suspended exactly when the spec says so."""
    assert job.spec is not None
    suspend, kueue = job.spec.suspend, kueue_managed(job)
    if child is None:
        if suspend:
            return []
        job_body = stage_job(job, stage, settings, suspend=kueue, deadline_seconds=_remaining(job, start, now))
        return [ApplyObject(spec_config_map(job)), CreateJob(job_body)]
    if kueue:  # Kueue owns the Job's suspend field: stopping means deleting the unfinished Job
        return [DeleteObject("Job", child.name)] if suspend and child.finished is None else []
    return [SuspendJob(child.name, suspend)] if child.suspended != suspend else []


def _remaining(job: Observed, start: datetime | None, now: datetime) -> int | None:
    """Seconds left before `activeDeadlineSeconds`, given to a new stage Job as its own deadline."""
    assert job.spec is not None
    deadline = job.spec.active_deadline_seconds
    if deadline is None:
        return None
    elapsed = (now - start).total_seconds() if start else 0.0
    return max(1, math.ceil(deadline - elapsed))


def _verdict_while_running(suspend: bool, current: StageStatus, child: ChildJob | None,
                           entries: list[StageStatus]) -> Verdict:
    done = f"{sum(e.phase is Phase.SUCCEEDED for e in entries)}/{len(entries)} stages done"
    if suspend:
        return Verdict(Phase.SUSPENDED, reasons.SUSPENDED, f"spec.suspend is true; {done}")
    if current.phase is Phase.RUNNING:
        return Verdict(Phase.RUNNING, reasons.STAGE_RUNNING, f"stage {current.name} running; {done}")
    why = f": {current.message}" if current.message else ""
    reason = child.waiting.reason if child is not None and child.waiting is not None else reasons.WAITING
    return Verdict(Phase.PENDING, reason, clip(f"waiting for stage {current.name} to start{why}"))


def _cleanup_after_ttl(job: Observed, children: Mapping[str, ChildJob], now: datetime) -> list[Action]:
    """Once `ttlSecondsAfterFinished` has passed, delete the children (never the SelfGuideJob itself)."""
    ttl = job.spec.ttl_seconds_after_finished if job.spec else None
    finished = job.status.completion_time
    if ttl is None or finished is None or now < finished + timedelta(seconds=ttl) or not children:
        return []
    return [*(DeleteObject("Job", c.name) for c in children.values()),
            DeleteObject("ConfigMap", spec_config_map_name(job.name))]


def _plan(job: Observed, entries: list[StageStatus], verdict: Verdict, start: datetime | None,
          results: dict[str, Any], settings: OperatorSettings, now: datetime, actions: list[Action],
          jobs: Mapping[str, str]) -> Plan:
    """The new status (results of earlier stages kept), and the Events announcing what changed."""
    old = job.status
    current = next((e for e in entries if e.phase is not Phase.SUCCEEDED), entries[-1] if entries else None)
    evaluation = results.get("evaluation", old.evaluation)
    published = outputs(job, settings, entries, evaluation) if job.spec is not None else old.outputs
    if published is not None and published.model_adapter and not any(
            isinstance(a, ApplyObject) and a.body["kind"] == "ModelAdapter" for a in actions):
        published = published.model_copy(update={"model_adapter": None})  # named only with its creation
    status = SelfGuideJobStatus(
        observed_generation=observed_generation(job.generation, job.spec, entries),
        phase=verdict.phase,
        stage=current.name if current else None,
        progress=f"{sum(e.phase is Phase.SUCCEEDED for e in entries)}/{len(entries)}" if entries else None,
        start_time=start,
        completion_time=now if verdict.phase in TERMINAL else None,
        stages=entries,
        conditions=conditions(verdict, job.generation, old.conditions, now),
        outputs=published,
        generation=results.get("generation", old.generation),
        training=results.get("training", old.training),
        evaluation=results.get("evaluation", old.evaluation),
    )
    return Plan(status, actions, transition_events(old, status, verdict, jobs))
