"""Status vocabulary: conditions for `kubectl wait`, kstatus (Flux) and Argo CD, stage results, and the Events
that announce every transition."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import ValidationError

from selfguide.contract.registry import stage as stage_definition
from selfguide.contract.results import StageResult
from selfguide.contract.status import Condition, ConditionStatus, Phase, SelfGuideJobStatus
from selfguide.spec.problems import problems_from
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


def conditions(verdict: Verdict, generation: int, previous: list[Condition], now: datetime) -> list[Condition]:
    """Every condition type, True or False; a condition keeps its lastTransitionTime until its status flips."""
    before = {c.type: c for c in previous}
    result = []
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


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the SelfGuideJob."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def transition_events(old: SelfGuideJobStatus, new: SelfGuideJobStatus, verdict: Verdict) -> list[Event]:
    """One Event per stage that started, succeeded or failed, and one per phase change of the job."""
    before = {s.name: s.phase for s in old.stages}
    events = []
    for stage in new.stages:
        if before.get(stage.name) == stage.phase:
            continue
        detail = f": {stage.message}" if stage.message else ""
        if stage.phase is Phase.RUNNING:
            events.append(Event("Normal", "StageStarted", f"stage {stage.name} started (Job {stage.job_name})"))
        elif stage.phase is Phase.SUCCEEDED:
            events.append(Event("Normal", "StageSucceeded", f"stage {stage.name} succeeded{detail}"))
        elif stage.phase is Phase.FAILED:
            events.append(Event("Warning", "StageFailed", f"stage {stage.name} failed{detail}"))
    if new.phase != old.phase:
        events.append(Event("Warning" if verdict.phase is Phase.FAILED else "Normal", verdict.reason, verdict.message))
    return events


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
