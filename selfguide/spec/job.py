"""The `SelfGuideJob` resource: one file format for `kubectl apply`, GitOps and `selfguide run`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from selfguide.spec.base import SpecModel
from selfguide.spec.evaluation import EvaluationSpec
from selfguide.spec.generation import GenerationSpec
from selfguide.spec.model import ModelSpec
from selfguide.spec.runtime import DNS_LABEL, LabelMap, ModelCacheSpec, OutputSpec, PodSettings, StagesSettings
from selfguide.spec.task import TaskSpec
from selfguide.spec.training import TrainingSpec

GROUP = "selfguide.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "SelfGuideJob"
PLURAL = "selfguidejobs"
SHORT_NAME = "sgj"

MAX_NAME_LENGTH = 52
"""Child objects are named `<name>-<stage>`; a Job's name must stay a 63-character DNS label."""


class SelfGuideJobSpec(SpecModel):
    """Desired state: the task and how to learn it. `task` and `model` are immutable once created."""

    task: TaskSpec
    model: ModelSpec = ModelSpec()
    generation: GenerationSpec = GenerationSpec()
    training: TrainingSpec = TrainingSpec()
    evaluation: EvaluationSpec | None = None
    """Score the base model (few-shot) and the fine-tuned model on a held-out set. Skipped when unset."""

    suspend: bool = False
    """Stop running stages; setting it back to false resumes where the job stopped."""
    active_deadline_seconds: Annotated[int | None, Field(ge=1, le=31_536_000)] = None
    """Fail the whole job (reason DeadlineExceeded) when it runs longer than this."""
    ttl_seconds_after_finished: Annotated[int | None, Field(ge=0, le=31_536_000)] = None
    """Delete the stage Jobs and pods this long after the job finished; the SelfGuideJob stays."""
    output: OutputSpec = OutputSpec()
    model_cache: ModelCacheSpec | None = None
    pod: PodSettings = PodSettings()
    """Settings for every stage pod."""
    stages: StagesSettings = StagesSettings()
    """Per-stage settings, applied over `pod`."""


class ObjectMeta(SpecModel):
    """The metadata a manifest may carry. Server-populated fields are accepted so that
    `kubectl get -o yaml` output validates too."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=DNS_LABEL)]
    namespace: Annotated[str | None, Field(max_length=63, pattern=DNS_LABEL)] = None
    labels: LabelMap | None = None
    annotations: Annotated[dict[str, str] | None, Field(max_length=256)] = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    finalizers: list[str] | None = None
    managed_fields: list[dict[str, Any]] | None = None
    owner_references: list[dict[str, Any]] | None = None


class SelfGuideJob(SpecModel):
    """A complete manifest, as `kubectl apply -f` and `selfguide run` take it."""

    api_version: Literal["selfguide.dev/v1alpha1"] = API_VERSION
    kind: Literal["SelfGuideJob"] = KIND
    metadata: ObjectMeta
    spec: SelfGuideJobSpec
    status: dict[str, Any] | None = None
    """Written by the operator; ignored in input."""
