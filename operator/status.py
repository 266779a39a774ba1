"""Status vocabulary: conditions for `kubectl wait`, kstatus (Flux) and Argo CD, stage results, and the Events
that announce every transition."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from selfguide.spec.status import (
    Condition,
    ConditionStatus,
    EvaluationMetrics,
    GenerationCounts,
    Phase,
    SelfGuideJobStatus,
    TrainingSummary,
)

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
class StageResult:
    """A finished stage's summary: a one-line message, and the status fields it fills in."""

    message: str
    fields: dict[str, BaseModel] = field(default_factory=dict)


def stage_results(stage: str, summary: Mapping[str, Any]) -> StageResult:
    """Read the summary a stage pod reported in its termination message (see `selfguide stage`)."""
    try:
        if stage == "generate":
            counts = GenerationCounts(examples=summary.get("examples", 0), candidates=summary.get("candidates", 0),
                                      dropped=dict(list((summary.get("dropped") or {}).items())[:64]))
            return StageResult(f"{counts.examples} examples kept of {counts.candidates} candidates",
                               {"generation": counts})
        if stage == "train":
            training = TrainingSummary(examples=summary.get("examples", 0), steps=summary.get("steps", 0),
                                       final_loss=summary.get("finalLoss"))
            loss = f", final loss {training.final_loss}" if training.final_loss is not None else ""
            return StageResult(f"{training.steps} steps on {training.examples} examples{loss}",
                               {"training": training})
        metrics = EvaluationMetrics.model_validate(
            {k: summary.get(k) for k in ("metric", "examples", "baseline", "finetuned", "delta")}
            | {"scores": summary.get("scores") or {}})
        return StageResult(f"{metrics.metric}: {metrics.baseline} few-shot, {metrics.finetuned} fine-tuned "
                           f"({metrics.delta:+})", {"evaluation": metrics})
    except (ValidationError, AttributeError, TypeError):
        return StageResult("succeeded; its summary could not be read")
