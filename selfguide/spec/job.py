"""The `SelfGuideJob` resource: one file format for `kubectl apply`, GitOps and `selfguide run`."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from selfguide.spec.base import SpecModel
from selfguide.spec.endpoint import AdapterPlacement
from selfguide.spec.evaluation import CALIBRATION_NEEDS_LIKELIHOOD, EvaluationSpec
from selfguide.spec.generation import ENDPOINT_RULE_MESSAGE, GenerationSpec
from selfguide.spec.model import ModelSpec
from selfguide.spec.problems import raise_if_any
from selfguide.spec.runtime import (
    DNS_LABEL,
    ModelCacheSpec,
    ObjectLabels,
    OutputSpec,
    PodSettings,
    StagesSettings,
)
from selfguide.spec.serving import ServingSpec
from selfguide.spec.task import TaskSpec, TaskType
from selfguide.spec.training import TrainingMethod, TrainingSpec

GROUP = "selfguide.dev"
VERSION = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "SelfGuideJob"
PLURAL = "selfguidejobs"
SHORT_NAME = "sgj"

MAX_ANNOTATION_BYTES = 256 * 1024
"""The API server's limit on the total size of an object's annotations."""
MAX_INLINE_TEXT = 50_000
"""Characters of text inline in a spec (task instruction, examples and labels, inline evaluation set), in all.
At most 200 KB of UTF-8: the object then fits `kubectl apply` (its last-applied annotation, 256 KiB), the spec
ConfigMap (1 MiB) and etcd. Larger evaluation sets belong in a file (`evaluation.path`)."""
INLINE_TEXT_RULE = (
    "self.task.instruction.size() + self.task.examples.map(e, e.input.size() + e.output.size()).sum()"
    " + (has(self.task.labels) ? self.task.labels.map(l, l.size()).sum() : 0)"
    " + (has(self.evaluation) && has(self.evaluation.examples) ? self.evaluation.examples.map(e, e.input.size()"
    " + e.output.size() + (has(e.outputs) ? e.outputs.map(o, o.size()).sum() : 0)).sum() : 0)"
    f" <= {MAX_INLINE_TEXT}"
)

MAX_NAME_LENGTH = 52
"""Child objects are named `<name>-<stage>`; a Job's name must stay a 63-character DNS label."""


def cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    """A CEL validation rule of the CRD (`x-kubernetes-validations`), mirroring a pydantic validator so that
    `kubectl apply` rejects what `selfguide validate` rejects."""
    rule_json: JsonDict = {"rule": rule, "message": message}
    return rule_json | ({"fieldPath": field_path} if field_path else {})


def crd_rules(*rules: JsonDict) -> JsonDict:
    return {"x-kubernetes-validations": list(rules)}


CLASSIFICATION = "self.type == 'classification'"
TASK_RULES = crd_rules(
    cel("self == oldSelf", "task is immutable; create a new SelfGuideJob instead"),
    cel(f"!({CLASSIFICATION}) || (has(self.labels) && size(self.labels) >= 2)",
        "classification needs a list of at least two labels", ".labels"),
    cel(f"{CLASSIFICATION} || !has(self.labels)", "labels are only allowed when type is classification",
        ".labels"),
    cel("!has(self.labels) || self.labels.all(l, "
        "self.labels.exists_one(m, m.trim().lowerAscii() == l.trim().lowerAscii()))",
        "labels must be distinct (ignoring case and surrounding spaces)", ".labels"),
    cel(f"!({CLASSIFICATION}) || !has(self.labels) || self.examples.all(e, e.output in self.labels)",
        "every example output must be one of the labels", ".examples"),
)
MODEL_RULES = crd_rules(cel("self == oldSelf", "model is immutable; create a new SelfGuideJob instead"))
GENERATION_RULES = crd_rules(
    cel("!has(self.inputs) || self.inputs.minPoolExamples <= self.inputs.maxPoolExamples",
        "must not exceed maxPoolExamples", ".inputs.minPoolExamples"),
    cel("!has(self.annotation) || self.annotation.keep <= self.annotation.samples", "must not exceed samples",
        ".annotation.keep"),
    cel("has(self.endpoint) == (has(self.backend) && self.backend == 'openai')", ENDPOINT_RULE_MESSAGE, ".endpoint"),
)
EVALUATION_RULES = crd_rules(
    cel("has(self.examples) != has(self.path)", "set exactly one of examples or path"),
    cel("!has(self.calibration) || self.calibration == 'none' || (has(self.method) && self.method == 'likelihood')",
        CALIBRATION_NEEDS_LIKELIHOOD, ".calibration"),
)
CLASSIFICATION_ONLY = (
    ("generation.annotation.method", "likelihood", "likelihood annotation needs a classification task"),
    ("generation.annotation.requirePseudoLabel", True, "pseudo labels exist only for classification tasks"),
    ("generation.inputs.labelSampling", "fill", "label sampling needs a classification task"),
    ("generation.inputs.poolSelection", "sameLabel", "pool selection by label needs a classification task"),
    ("evaluation.method", "likelihood", "likelihood evaluation (rank classification) needs a classification task"),
    ("evaluation.annotatorAccuracy", True, "the annotator's accuracy is measured on classification tasks only"),
)
"""Options that only make sense for classification: (field path, value, message)."""


def _classification_only_rule(path: str, value: object, message: str) -> JsonDict:
    literal = f"'{value}'" if isinstance(value, str) else str(value).lower()
    parts = path.split(".")
    absent = " || ".join(f"!has(self.{'.'.join(parts[: i + 1])})" for i in range(len(parts)))
    return cel(f"{CLASSIFICATION.replace('self.', 'self.task.')} || {absent} || self.{path} != {literal}", message,
               f".{path}")


NAME_RULES = crd_rules(
    cel(f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
        f"metadata.name must be at most {MAX_NAME_LENGTH} characters (stage Jobs are named <name>-<stage>)"),
    cel(f"self.metadata.name.matches('{DNS_LABEL}')",
        "metadata.name must be a DNS label: lowercase letters, digits and '-'"),
)


def inline_text(spec: SelfGuideJobSpec) -> int:
    """The characters `INLINE_TEXT_RULE` counts."""
    task, evaluation = spec.task, spec.evaluation
    size = len(task.instruction) + sum(len(e.input) + len(e.output) for e in task.examples)
    size += sum(map(len, task.labels or []))
    for example in (evaluation.examples if evaluation else None) or []:
        size += len(example.input) + len(example.output) + sum(map(len, example.outputs or []))
    return size


SERVER_ADAPTER_MESSAGE = "a server loads LoRA adapters only; with training.method full use adapter: local"
SPEC_RULES = crd_rules(
    *(_classification_only_rule(*rule) for rule in CLASSIFICATION_ONLY),
    cel("!has(self.generation) || !has(self.generation.endpoint) || !has(self.generation.endpoint.adapter) || "
        "self.generation.endpoint.adapter != 'server' || !has(self.training) || !has(self.training.method) || "
        "self.training.method != 'full'", SERVER_ADAPTER_MESSAGE, ".generation.endpoint.adapter"),
    cel(INLINE_TEXT_RULE, f"the task and the inline evaluation set must hold at most {MAX_INLINE_TEXT} characters "
                          "in all; put larger evaluation sets in a file (evaluation.path)"),
)


class SelfGuideJobSpec(SpecModel):
    """Desired state: the task and how to learn it. `task` and `model` are immutable once created."""

    model_config = ConfigDict(json_schema_extra=SPEC_RULES)

    task: Annotated[TaskSpec, Field(json_schema_extra=TASK_RULES)]
    model: Annotated[ModelSpec, Field(json_schema_extra=MODEL_RULES)] = ModelSpec()
    generation: Annotated[GenerationSpec, Field(json_schema_extra=GENERATION_RULES)] = GenerationSpec()
    training: TrainingSpec = TrainingSpec()
    evaluation: Annotated[EvaluationSpec | None, Field(json_schema_extra=EVALUATION_RULES)] = None
    """Score the base model (few-shot) and the fine-tuned model on a held-out set. Skipped when unset."""
    serving: ServingSpec | None = None
    """Have the operator create an AIBrix ModelAdapter for the published adapter (LoRA only). Off unless set."""

    suspend: bool = False
    """Stop running stages; setting it back to false resumes where the job stopped."""
    active_deadline_seconds: Annotated[int | None, Field(ge=1, le=31_536_000)] = None
    """Fail the whole job (reason DeadlineExceeded) when it runs longer than this."""
    pending_timeout_seconds: Annotated[int | None, Field(ge=1, le=31_536_000)] = None
    """Fail the job (reason PendingTimeout) when a stage's pod has not started running this long after its Job
    started or its last pod was created (unschedulable, a missing claim, refused by admission). Unset: the
    operator's default (the chart's `stages.pendingTimeoutSeconds`, 6 hours)."""
    ttl_seconds_after_finished: Annotated[int | None, Field(ge=0, le=31_536_000)] = None
    """Delete the stage Jobs and pods this long after the job finished; the SelfGuideJob stays."""
    output: OutputSpec = OutputSpec()
    model_cache: ModelCacheSpec | None = None
    pod: PodSettings = PodSettings()
    """Settings for every stage pod."""
    stages: StagesSettings = StagesSettings()
    """Per-stage settings, applied over `pod`."""

    @model_validator(mode="after")
    def _inline_text_fits(self) -> SelfGuideJobSpec:
        if (size := inline_text(self)) > MAX_INLINE_TEXT:
            raise_if_any([("", (f"the task and the inline evaluation set hold {size} characters; at most "
                                f"{MAX_INLINE_TEXT} in all (put larger evaluation sets in a file: evaluation.path)"))])
        return self


    @model_validator(mode="after")
    def _server_adapters_are_lora(self) -> SelfGuideJobSpec:
        endpoint = self.generation.endpoint
        if endpoint and endpoint.adapter is AdapterPlacement.SERVER and self.training.method is TrainingMethod.FULL:
            raise_if_any([("generation.endpoint.adapter", SERVER_ADAPTER_MESSAGE)])
        return self

    @model_validator(mode="after")
    def _classification_only(self) -> SelfGuideJobSpec:
        if self.task.type is TaskType.CLASSIFICATION:
            return self
        document = self.to_camel_dict()

        def lookup(path: str) -> object:
            found: object = document
            for part in path.split("."):
                found = found.get(part) if isinstance(found, dict) else None
            return found

        raise_if_any([(path, message) for path, value, message in CLASSIFICATION_ONLY if lookup(path) == value])
        return self


class ObjectMeta(SpecModel):
    """The metadata a manifest may carry. Server-populated fields are accepted so that
    `kubectl get -o yaml` output validates too."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=DNS_LABEL)]
    namespace: Annotated[str | None, Field(max_length=63, pattern=DNS_LABEL)] = None
    labels: ObjectLabels | None = None
    annotations: dict[str, str] | None = None
    """Bounded as the API server bounds them: 256 KiB of keys and values in all, however many."""
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    deletion_grace_period_seconds: int | None = None
    finalizers: list[str] | None = None
    managed_fields: list[dict[str, Any]] | None = None
    owner_references: list[dict[str, Any]] | None = None


    @model_validator(mode="after")
    def _annotations_fit(self) -> ObjectMeta:
        size = sum(len(k.encode()) + len(v.encode()) for k, v in (self.annotations or {}).items())
        if size > MAX_ANNOTATION_BYTES:
            raise_if_any([("annotations", (f"annotations take {size} bytes; the API server allows "
                                           f"{MAX_ANNOTATION_BYTES}"))])
        return self


class SelfGuideJob(SpecModel):
    """A complete manifest, as `kubectl apply -f` and `selfguide run` take it."""

    model_config = ConfigDict(json_schema_extra=NAME_RULES)

    api_version: Literal["selfguide.dev/v1alpha1"] = "selfguide.dev/v1alpha1"
    kind: Literal["SelfGuideJob"] = "SelfGuideJob"
    metadata: ObjectMeta
    spec: Annotated[SelfGuideJobSpec, Field(json_schema_extra=SPEC_RULES)]
    status: dict[str, Any] | None = None
    """Written by the operator; ignored in input."""
