"""The `SelfGuideJob` status, written only by the operator (the CRD's status schema is generated from it)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import Field

from selfguide.contract.progress import StageProgress
from selfguide.contract.registry import stage_names
from selfguide.contract.results import EvaluateResult, GenerateResult, TrainResult
from selfguide.spec.base import SpecModel

MAX_MESSAGE = 1024
"""Longest status message; longer ones (a stage's last log lines) are cut."""

Message = Annotated[str, Field(max_length=MAX_MESSAGE)]
Reason = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")]
Count = Annotated[int, Field(ge=0, le=2**53)]
PvcUri = Annotated[str, Field(max_length=1024, pattern=r"^pvc://[^\t\n\f\r ]+$")]
Name = Annotated[str, Field(min_length=1, max_length=64)]


class Phase(StrEnum):
    PENDING = "Pending"
    """Accepted; no stage has started yet (e.g. a stage Job waits for Kueue or for a node)."""
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    """`spec.suspend` is true: no stage pod runs."""


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(SpecModel):
    """A Kubernetes condition (as in metav1.Condition)."""

    type: Annotated[str, Field(min_length=1, max_length=64)]
    """Running, Complete, Failed, Suspended, Ready, Reconciling or Stalled."""
    status: ConditionStatus
    reason: Reason
    """CamelCase reason of the last transition."""
    message: Message = ""
    last_transition_time: datetime
    observed_generation: Annotated[int | None, Field(ge=0)] = None


class StageStatus(SpecModel):
    """One stage and the batch/v1 Job that runs it."""

    name: Name
    """generate, train or evaluate."""
    phase: Phase = Phase.PENDING
    job_name: Annotated[str | None, Field(max_length=63)] = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    attempts: Count = 0
    """Pods started for this stage (retries included)."""
    message: Message | None = None
    """The stage's error, or a one-line summary of what it produced."""
    generation: Annotated[int | None, Field(ge=0)] = None
    """The SelfGuideJob's `metadata.generation` when this stage's Job was created: the spec it runs with."""
    config_hash: Annotated[str | None, Field(max_length=64)] = None
    """Hash of the spec sections the stage reads, as it ran (`selfguide.contract.confighash`)."""
    progress: StageProgress | None = None
    """Live progress reported by the stage pod (percentage, ETA, the stage's counters); 100% once it succeeded."""


class Outputs(SpecModel):
    """Artifacts on the output claim, as `pvc://claim/path` URIs (each set once its stage succeeded)."""

    dataset: PvcUri | None = None
    """The generated training set (JSONL of `{"input", "output"}`)."""
    adapter: PvcUri | None = None
    """The PEFT adapter directory (`adapter_config.json`, `adapter_model.safetensors`), or the fine-tuned model
    (full fine-tuning). Published only once every stage succeeded when `spec.evaluation.gate` is set, and never
    for a model that missed the gate."""
    base_model: Annotated[str | None, Field(max_length=512)] = None
    """The base model the adapter applies to (`spec.model.name`), set with `adapter`."""
    serving: PvcUri | None = None
    """Ready-to-use serving files (`vllm-serve.sh`, AIBrix `modeladapter.yaml`), set once the model is published."""
    model_adapter: Name | None = None
    """The AIBrix `ModelAdapter` the operator created for the published adapter (`spec.serving`), once it
    exists."""
    report: PvcUri | None = None
    """The evaluation report (`report.json`; `report.html` beside it)."""


class SelfGuideJobStatus(SpecModel):
    """Observed state, written by the operator (never by users)."""

    observed_generation: Annotated[int | None, Field(ge=0)] = None
    """The newest generation whose spec produced every result shown: a spec edited after a stage ran with the
    sections it reads leaves it at the generation that stage ran with."""
    phase: Phase | None = None
    stage: Name | None = None
    """The stage running now, or the last one that ran."""
    progress: Annotated[str | None, Field(max_length=16, pattern=r"^[0-9]+/[0-9]+$")] = None
    """Stages completed out of the stages to run, e.g. `1/3`."""
    start_time: datetime | None = None
    """When the first stage started; `spec.activeDeadlineSeconds` counts from here."""
    completion_time: datetime | None = None
    """When the job succeeded or failed; `spec.ttlSecondsAfterFinished` counts from here."""
    stages: Annotated[list[StageStatus], Field(max_length=len(stage_names()), default_factory=list)]
    conditions: Annotated[list[Condition], Field(max_length=16, default_factory=list)]
    outputs: Outputs | None = None
    generation: GenerateResult | None = None
    """What the `generate` stage reported."""
    training: TrainResult | None = None
    """What the `train` stage reported."""
    evaluation: EvaluateResult | None = None
    """What the `evaluate` stage reported."""
