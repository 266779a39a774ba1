"""Status vocabulary: conditions for `kubectl wait`, kstatus (Flux) and Argo CD, stage results, and the Events
that announce every transition."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import ValidationError

from selfguide.contract.registry import stage as stage_definition
from selfguide.contract.results import StageResult
from selfguide.contract.status import Condition, ConditionStatus, Phase, SelfGuideJobStatus
from selfguide.spec.problems import problems_from
from selfguide_operator import reasons
from selfguide_operator.observed import Outcome, clip

TERMINAL = (Phase.SUCCEEDED, Phase.FAILED)

_TRUE_WHEN: dict[str, tuple[Phase, ...]] = {
    "Running": (Phase.RUNNING,),
    "Complete": (Phase.SUCCEEDED,),
    "Failed": (Phase.FAILED,),
    "Suspended": (Phase.SUSPENDED,),
    "Ready": (Phase.SUCCEEDED,),
    "Reconciling": (Phase.PENDING, Phase.RUNNING),
    "Stalled": (Phase.FAILED,),
}
"""Condition type -> the phases in which it is True. Ready, Reconciling and Stalled follow kstatus: a batch job
is Ready once it succeeded, Reconciling while it works towards that, Stalled when it cannot get there."""


@dataclass(frozen=True)
class Verdict:
    """Where the job stands, and why (the reason and message of the conditions that are True)."""

    phase: Phase
    reason: str
    message: str


RECONCILE_ERROR = "ReconcileError"
"""A condition present once a reconcile failed (True with the error until a reconcile succeeds again)."""


def conditions(verdict: Verdict, generation: int, previous: list[Condition], now: datetime) -> list[Condition]:
    """Every condition type, True or False; a condition keeps its lastTransitionTime until its status flips."""
    before = {c.type: c for c in previous}
    result = []
    if (error := before.get(RECONCILE_ERROR)) is not None:
        result.append(Condition(
            type=RECONCILE_ERROR, status=ConditionStatus.FALSE, reason=reasons.RECONCILED, message="",
            last_transition_time=error.last_transition_time if error.status is ConditionStatus.FALSE else now,
            observed_generation=generation))
    for kind, phases in _TRUE_WHEN.items():
        true = verdict.phase in phases
        status = ConditionStatus.TRUE if true else ConditionStatus.FALSE
        old = before.get(kind)
        result.append(Condition(
            type=kind, status=status, reason=verdict.reason if true else verdict.phase.value,
            message=verdict.message if true else "",
            last_transition_time=old.last_transition_time if old and old.status == status else now,
            observed_generation=generation,
        ))
    return result


def with_reconcile_error(status: SelfGuideJobStatus, message: str, generation: int,
                         now: datetime) -> SelfGuideJobStatus:
    """`status` with the ReconcileError condition True: a failed reconcile is visible, not only in the log."""
    old = next((c for c in status.conditions if c.type == RECONCILE_ERROR), None)
    error = Condition(type=RECONCILE_ERROR, status=ConditionStatus.TRUE, reason=reasons.RECONCILE_FAILED,
                      message=clip(message),
                      last_transition_time=old.last_transition_time if old and old.status is ConditionStatus.TRUE
                      else now, observed_generation=generation)
    return status.model_copy(update={"conditions": [c for c in status.conditions if c.type != RECONCILE_ERROR]
                                      + [error]})


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the SelfGuideJob; `subject` (a stage) tells apart Events of the same reason."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    subject: str = ""
    transition: str = ""
    """What it announces when that is not its reason and subject (a phase change, whatever its reason)."""
    once: str = ""
    """Set for an Event that happens at most once for this job (a stage Job's start, success or failure): its
    name then derives from this alone, not from the recorded status, so it is never posted twice."""

    @property
    def key(self) -> str:
        """What makes this Event one transition: posted twice for the same recorded status, it is one Event."""
        return self.transition or f"{self.reason}/{self.subject}"


def transition_events(old: SelfGuideJobStatus, new: SelfGuideJobStatus, verdict: Verdict,
                      jobs: Mapping[str, str] | None = None) -> list[Event]:
    """One Event per stage that started, succeeded or failed (once per stage Job, by its uid in `jobs`), and
    one per phase change of the job."""
    before = {s.name: s.phase for s in old.stages}
    events = []
    for stage in new.stages:
        was = before.get(stage.name)
        if was == stage.phase:
            continue
        detail = f": {stage.message}" if stage.message else ""
        uid = (jobs or {}).get(stage.name)

        def once(reason: str, uid: str | None = uid) -> str:
            return f"{reason}/{uid}" if uid else ""

        started = Event("Normal", reasons.STAGE_STARTED, f"stage {stage.name} started (Job {stage.job_name})", stage.name,
                        once=once(reasons.STAGE_STARTED))
        ran = stage.phase is Phase.SUCCEEDED or (stage.phase is Phase.FAILED and stage.attempts
                                                 and not (stage.message or "").startswith("stopped:"))
        if stage.phase is Phase.RUNNING or (ran and was in (None, Phase.PENDING)):  # a start seen late still counts
            events.append(started)
        if stage.phase is Phase.SUCCEEDED:
            events.append(Event("Normal", reasons.STAGE_SUCCEEDED, f"stage {stage.name} succeeded{detail}", stage.name,
                                once=once(reasons.STAGE_SUCCEEDED)))
        elif stage.phase is Phase.FAILED:
            events.append(Event("Warning", reasons.STAGE_FAILED, f"stage {stage.name} failed{detail}", stage.name,
                                once=once(reasons.STAGE_FAILED)))
    old_reason = next((c.reason for c in old.conditions if c.type == "Reconciling" and c.status == "True"), None)
    waits_anew = new.phase is Phase.PENDING and verdict.reason != old_reason and verdict.reason not in QUIET_REASONS
    if new.phase != old.phase or waits_anew:  # a pending stage's new blocking reason (Unschedulable, ...) too
        normal = verdict.phase is not Phase.FAILED and verdict.reason in QUIET_REASONS
        transition = f"phase/{new.phase}" if new.phase != old.phase else f"waiting/{verdict.reason}"
        events.append(Event("Normal" if normal else "Warning", verdict.reason, verdict.message,
                            transition=transition))
    return events


QUIET_REASONS = {reasons.WAITING, reasons.STAGE_RUNNING, reasons.SUSPENDED, reasons.COMPLETED, reasons.NO_POD,
                 reasons.STARTING, reasons.CONTAINER_CREATING, reasons.POD_INITIALIZING, reasons.POD_PENDING,
                 reasons.ADMISSION}
"""Verdict reasons announced as Normal Events; any other (Unschedulable, FailedCreate, a failure) is a Warning."""


@dataclass(frozen=True)
class StageReport:
    """A finished stage's result as the status shows it: a one-line message, and the status fields it fills."""

    message: str
    fields: dict[str, StageResult] = field(default_factory=dict)


def stage_report(stage: str, outcome: Outcome) -> StageReport:
    """Read the result a stage pod reported in its termination message, with the stage's own result model.
    A result that breaks the contract says so in the stage's message (it is a bug, never silent)."""
    try:
        result = outcome.message.result() if outcome.message is not None else None
    except ValidationError as error:
        problems = "; ".join(map(str, problems_from(error)))
        return StageReport(clip(f"succeeded, but its result breaks the stage contract: {problems}"))
    if result is None:
        return StageReport("succeeded")
    return StageReport(result.line(), {stage_definition(stage).status_field: result})
