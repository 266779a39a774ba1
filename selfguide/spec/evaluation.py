"""The optional `evaluate` stage: few-shot prompting of the base model versus base + adapter."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from selfguide.spec.base import SpecModel
from selfguide.spec.generation import Calibration
from selfguide.spec.problems import raise_if_any
from selfguide.spec.uris import PVC_PATTERN, checked

MAX_EVAL_TEXT = 4096


class EvalExample(SpecModel):
    """One held-out instance; `outputs` may list extra references (ROUGE-L takes the best)."""

    input: Annotated[str, Field(min_length=1, max_length=MAX_EVAL_TEXT)]
    output: Annotated[str, Field(min_length=1, max_length=MAX_EVAL_TEXT)]
    outputs: Annotated[list[Annotated[str, Field(max_length=MAX_EVAL_TEXT)]] | None, Field(max_length=16)] = (
        None
    )


class GateSpec(SpecModel):
    """The quality gate: publish the fine-tuned model only when it beats few-shot prompting of its base model."""

    min_improvement: Annotated[float, Field(ge=-100.0, le=100.0)] = 0.0
    """Points of the task's metric (0-100) by which SELF-GUIDE must beat few-shot prompting of the base model, with
    the evidence of the evaluation set: the lower end of the paired `confidence` interval of the improvement
    (bootstrap over the items) must reach it. 0 publishes only a model shown not to be worse than its base."""
    confidence: Annotated[float, Field(ge=0.5, le=0.999)] = 0.95
    """Two-sided confidence of that interval."""


class EvaluationMethod(StrEnum):
    GENERATE = "generate"
    """Greedy decoding; exact match reads the label the answer names (the paper)."""
    LIKELIHOOD = "likelihood"
    """Classification: rank classification, the answer is the label whose log-probability as the whole reply
    is highest (every answer is a label)."""


CALIBRATION_NEEDS_LIKELIHOOD = "batch calibration needs method: likelihood"


class EvaluationSpec(SpecModel):
    """Where the evaluation set comes from and how much of it to score."""

    examples: Annotated[list[EvalExample] | None, Field(min_length=1, max_length=200)] = None
    """An inline evaluation set (small sets only; use `path` for larger ones)."""
    path: Annotated[str | None, Field(min_length=1, max_length=1024, pattern=rf"^({PVC_PATTERN}|(/|\./|\.\./)[^\t\n\f\r ]+)$")] = (
        None
    )
    """A JSONL file of `{"input", "output"}` lines: a local path or `pvc://claim/path`."""
    max_examples: Annotated[int | None, Field(ge=1, le=1_000_000)] = None
    """Score only the first N examples."""
    max_new_tokens: Annotated[int, Field(ge=1, le=8192)] = 128
    method: EvaluationMethod = EvaluationMethod.GENERATE
    """How every compared system answers: `generate` (greedy decoding, the paper) or, for classification,
    `likelihood` (rank classification over the labels)."""
    calibration: Calibration = Calibration.NONE
    """With `method: likelihood`: `batch` subtracts each label's mean log-probability over the evaluation inputs
    before choosing, per system (Batch Calibration, as likelihood annotation does), so a prior for one label that
    fine-tuning on a few examples shifted does not decide every answer."""
    batch_size: Annotated[int | None, Field(ge=1, le=4096)] = None
    """Sequences per forward pass; unset: sized from free GPU memory, 16 on CPU."""
    few_shot_finetune_baseline: bool = False
    """Also fine-tune on the gold examples alone (a paper baseline) and score that model."""
    gate: GateSpec | None = None
    """Refuse to publish a model that misses this improvement (off unless set): the job fails with reason
    QualityGateFailed, `status.outputs` names no adapter, and `selfguide run` exits with code 4."""
    self_icl_baseline: bool = False
    """Also prompt the base model with the gold examples plus as many generated examples as fit
    `generation.maxPromptTokens` (the paper's Self-ICL baseline) and score it."""
    annotator_accuracy: bool = False
    """Classification: also label the evaluation inputs with the job's annotator (its method, prompt and
    calibration, as generated inputs are labelled) and report its accuracy beside the majority-class share. At or
    below that share, self-training cannot help: the report and the job's status say so. Costs one annotation of
    every evaluation input (`generation.annotation.samples` sampled answers each with the vote)."""

    _pvc_stays_in_its_claim = field_validator("path", mode="before")(checked)

    @model_validator(mode="after")
    def _one_source(self) -> EvaluationSpec:
        if (self.examples is None) == (self.path is None):
            raise_if_any([("", "set exactly one of examples or path")])
        return self

    @model_validator(mode="after")
    def _calibration_needs_likelihood(self) -> EvaluationSpec:
        if self.calibration is not Calibration.NONE and self.method is not EvaluationMethod.LIKELIHOOD:
            raise_if_any([("calibration", CALIBRATION_NEEDS_LIKELIHOOD)])
        return self
