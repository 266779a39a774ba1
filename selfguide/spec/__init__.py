"""Pydantic models of the SelfGuideJob manifest: the single source of truth (the CRD is generated from them)."""

from selfguide.spec.evaluation import EvalExample, EvaluationSpec
from selfguide.spec.generation import (
    AnnotationSpec,
    Backend,
    FilteringSpec,
    GenerationSpec,
    InputGenerationSpec,
    LengthFilterSpec,
    NearDuplicateFilterSpec,
)
from selfguide.spec.job import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAME,
    VERSION,
    SelfGuideJob,
    SelfGuideJobSpec,
)
from selfguide.spec.model import BUNDLED_MODEL, Dtype, ModelSpec
from selfguide.spec.problems import SpecProblems
from selfguide.spec.task import Example, TaskSpec, TaskType
from selfguide.spec.training import LoraSpec, TrainingMethod, TrainingSpec

__all__ = [
    "API_VERSION", "BUNDLED_MODEL", "GROUP", "KIND", "PLURAL", "SHORT_NAME", "VERSION",
    "AnnotationSpec", "Backend", "Dtype", "EvalExample", "EvaluationSpec", "Example", "FilteringSpec",
    "GenerationSpec", "InputGenerationSpec", "LengthFilterSpec", "LoraSpec", "ModelSpec",
    "NearDuplicateFilterSpec", "SelfGuideJob", "SelfGuideJobSpec", "SpecProblems", "TaskSpec", "TaskType",
    "TrainingMethod", "TrainingSpec",
]
