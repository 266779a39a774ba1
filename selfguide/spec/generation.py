"""How the model writes its own data: input generation, output annotation and the rule-based filters.

Defaults follow SELF-GUIDE (arXiv 2407.12874) and its reference code; where the paper searched a range,
the default is the value its "One Parameter Fits All" search picked.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from selfguide.spec.base import SpecModel
from selfguide.spec.endpoint import EndpointSpec
from selfguide.spec.problems import raise_if_any
from selfguide.spec.task import TaskType

RELEASED_INPUT_TEMPERATURE = {TaskType.CLASSIFICATION: 0.7, TaskType.GENERATION: 0.9}
RELEASED_ROUNDS = {TaskType.CLASSIFICATION: 40, TaskType.GENERATION: 20}
"""The paper's budget: 40 rounds x 10 prompts (about 400 inputs) for classification, 20 x 10 for generation."""

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopK = Annotated[int, Field(ge=0, le=1000)]
"""0 disables top-k."""
MaxNewTokens = Annotated[int, Field(ge=1, le=8192)]
Term = Annotated[str, Field(min_length=1, max_length=256)]
ENDPOINT_RULE_MESSAGE = "set exactly when backend is openai (the server it sends requests to)"


class Backend(StrEnum):
    AUTO = "auto"
    """vLLM where it can run (its CUDA build with a GPU, its CPU build without one) and the stage's workload
    amortises the engine's start-up; transformers otherwise (engine/backends/__init__.py: `choose_backend`)."""
    TRANSFORMERS = "transformers"
    VLLM = "vllm"
    OPENAI = "openai"
    """An OpenAI-compatible server that already serves the base model (`endpoint`): vLLM, KServe, AIBrix."""


class LabelSampling(StrEnum):
    UNIFORM = "uniform"
    """The paper: each classification prompt asks for an input of a label drawn uniformly at random."""
    FILL = "fill"
    """Annotate after every round and ask the next round for the labels that are short of annotated examples,
    so class balancing keeps most of what was made."""


class PoolSelection(StrEnum):
    RANDOM = "random"
    """The paper: a prompt shows generated inputs drawn at random from the whole pool."""
    SAME_LABEL = "sameLabel"
    """Classification: a prompt asking for label L shows only pool inputs annotated L (the pool is annotated
    after every round), so a small generator copies the topic of the class it is asked for instead of the
    pool's majority (class-conditional demonstrations)."""


class AnnotationMethod(StrEnum):
    VOTE = "vote"
    """The paper: sample answers, keep the most likely, majority vote (self-consistency)."""
    LIKELIHOOD = "likelihood"
    """Classification only: score every label by its log-probability as the model's answer to the same
    few-shot prompt and take the best (one prompt computation per input)."""


class Calibration(StrEnum):
    NONE = "none"
    BATCH = "batch"
    """Batch Calibration (Zhou et al., ICLR 2024): subtract each label's mean score over the job's generated
    inputs before choosing, which removes the model's prior for a label (likelihood annotation only)."""


class InputGenerationSpec(SpecModel):
    """Rounds of prompts that ask the model for new task inputs in the style of the examples."""

    target_inputs: Annotated[int | None, Field(ge=1, le=1_000_000)] = None
    """Stop early once this many inputs have passed the input filters (unset: run every round)."""
    max_rounds: Annotated[int | None, Field(ge=1, le=10_000)] = None
    """Upper bound on rounds, whatever the yield; each round refreshes the pool of generated inputs. Unset: the
    paper's budget, 40 for classification and 20 for generation."""
    prompts_per_round: Annotated[int, Field(ge=1, le=4096)] = 10
    """Prompts per round; each prompt yields one candidate input per sample."""
    samples_per_prompt: Annotated[int, Field(ge=1, le=64)] = 1
    """Completions drawn per prompt."""
    min_pool_examples: Annotated[int, Field(ge=0, le=32)] = 1
    """Fewest generated inputs shown in a prompt once the pool holds any."""
    max_pool_examples: Annotated[int, Field(ge=0, le=32)] = 10
    """Most generated inputs shown in a prompt (drawn at random from the pool)."""
    temperature: Temperature | None = None
    """High, for diverse inputs (the paper searched 0.6-1.0). Unset: the released configuration,
    0.7 for classification and 0.9 for generation."""
    top_k: TopK = 40
    top_p: Probability = 1.0
    max_new_tokens: MaxNewTokens = 256
    """Longest generated input, in tokens."""

    label_sampling: LabelSampling = LabelSampling.UNIFORM
    """How classification prompts pick the label to ask for: `uniform` (the paper) or `fill`."""
    pool_selection: PoolSelection = PoolSelection.RANDOM
    """Which generated inputs a classification prompt shows: `random` (the paper) or `sameLabel`."""

    def rounds_for(self, task_type: TaskType) -> int:
        """The configured number of rounds, or the paper's for this task type."""
        return RELEASED_ROUNDS[task_type] if self.max_rounds is None else self.max_rounds

    def temperature_for(self, task_type: TaskType) -> float:
        """The configured temperature, or the released configuration's for this task type."""
        return RELEASED_INPUT_TEMPERATURE[task_type] if self.temperature is None else self.temperature

    @model_validator(mode="after")
    def _pool_bounds(self) -> InputGenerationSpec:
        if self.min_pool_examples > self.max_pool_examples:
            raise_if_any([("minPoolExamples", "must not exceed maxPoolExamples")])
        return self


class AnnotationSpec(SpecModel):
    """Output annotation: by default several low-temperature answers per input, then a majority vote."""

    method: AnnotationMethod = AnnotationMethod.VOTE
    """`vote` (the paper) or, for classification, `likelihood`."""
    calibration: Calibration = Calibration.NONE
    """Calibration of likelihood scores: `none` or `batch`."""
    min_margin: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    """Likelihood annotation: keep an input only when its best label beats the second by at least this many
    nats (after calibration)."""
    require_pseudo_label: bool = False
    """Classification: keep an input only when its annotation agrees with the label it was generated for
    (the paper discards that label after steering input generation)."""

    samples: Annotated[int, Field(ge=1, le=64)] = 20
    """Answers sampled per input."""
    keep: Annotated[int, Field(ge=1, le=64)] = 10
    """The most likely answers (highest log-probability) kept to vote; the paper keeps 10 of 20."""
    temperature: Temperature = 0.2
    top_k: TopK = 10
    top_p: Probability = 1.0
    max_new_tokens: MaxNewTokens = 256
    min_agreement: Probability = 0.3
    """Keep an input only when its winning answer holds at least this share of the valid votes."""

    @model_validator(mode="after")
    def _keep_at_most_samples(self) -> AnnotationSpec:
        if self.keep > self.samples:
            raise_if_any([("keep", "must not exceed samples")])
        return self


class LengthFilterSpec(SpecModel):
    """Drop texts whose length (characters) is outside mean +/- k sigma of the gold ones."""

    enabled: bool | None = None
    """Unset: on for inputs; on for outputs of generation tasks and off for classification outputs
    (the released configuration)."""
    sigmas: Annotated[float, Field(gt=0.0, le=10.0)] = 2.0
    """Accepted band: mean +/- sigmas x standard deviation."""
    min_spread: Annotated[float, Field(ge=0.0, le=1.0)] = 0.25
    """When the gold lengths barely vary (sigma near 0), allow at least this relative spread around the
    mean, so three equally long examples do not reject every input that differs by one character."""

    def enabled_for(self, default: bool) -> bool:
        """`enabled`, or `default` (which depends on the task type) when unset."""
        return default if self.enabled is None else self.enabled


class NearDuplicateFilterSpec(SpecModel):
    """Beyond the paper: drop inputs too similar to one already kept (character n-gram Jaccard)."""

    enabled: bool = False
    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9


class FilteringSpec(SpecModel):
    """Rule-based filters on generated inputs and outputs."""

    input_length: LengthFilterSpec = LengthFilterSpec()
    """Length filter on generated inputs, against the gold inputs."""
    output_length: LengthFilterSpec = LengthFilterSpec()
    """Length filter on each annotation sample, against the gold outputs."""
    noise: bool = True
    """Drop inputs and outputs that contain a noise term: the paper's greeting phrases and `noiseTerms`."""
    noise_terms: Annotated[list[Term], Field(max_length=256)] = Field(default_factory=list)
    """Extra noise terms for this task (case-insensitive substrings). They never leak into other jobs."""
    duplicates: bool = True
    """Drop duplicates of a gold input or of an input already in the pool: exact (whitespace aside), or equal
    after normalisation (case, surrounding punctuation and quotes)."""
    scaffolding: bool = True
    """Drop inputs that carry the prompt's scaffolding rather than task text: bracketed placeholders such as
    `[input]` or `[new]` that no gold input contains, and the template's own phrases."""
    script: bool = True
    """Drop inputs and outputs whose letters are mostly (over a fifth) in a script that no gold input, or
    output, uses: a small generator drifts into other languages, and such inputs breed more once pooled."""
    near_duplicates: NearDuplicateFilterSpec = NearDuplicateFilterSpec()
    balance_classes: bool = True
    """Classification: downsample so every label has as many examples as the rarest (as the paper)."""


class GenerationSpec(SpecModel):
    """The `generate` stage: which engine runs it, and every knob of input and output synthesis."""

    backend: Backend = Backend.AUTO
    batch_size: Annotated[int | None, Field(ge=1, le=4096)] = None
    """Sequences per forward pass (transformers backend; a prompt with n samples counts n). Unset: sized from
    free GPU memory on a GPU, 16 on CPU. vLLM schedules its own batches."""
    max_prompt_tokens: Annotated[int, Field(ge=64, le=1_048_576)] = 2048
    """A prompt longer than this is trimmed (fewer pool examples) or skipped with a recorded reason."""
    tensor_parallel_size: Annotated[int, Field(ge=1, le=64)] = 1
    """GPUs one vLLM engine spans (tensor parallelism), for models too large for one GPU; the generate and
    evaluate stage pods need that many GPUs. The model's attention head count must divide by it and its
    key-value head count must divide by it or divide it (vLLM's rule), which the stage checks before loading.
    The transformers backend ignores it."""
    kv_cache_gib: Annotated[float | None, Field(ge=0.25, le=4096.0)] = None
    """vLLM: memory reserved for the KV cache, in GiB (the generate and evaluate pods' memory request must cover
    it and the model). Unset: 2 GiB on CPUs, where vLLM would otherwise reserve most of the machine's memory and
    refuse to start beside anything else; on GPUs vLLM sizes it from free GPU memory. The transformers backend
    ignores it."""
    endpoint: EndpointSpec | None = None
    """The server of `backend: openai` (required there, refused with any other backend)."""
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    inputs: InputGenerationSpec = InputGenerationSpec()
    annotation: AnnotationSpec = AnnotationSpec()
    filtering: FilteringSpec = FilteringSpec()

    @model_validator(mode="after")
    def _endpoint_with_openai(self) -> GenerationSpec:
        if (self.endpoint is not None) != (self.backend is Backend.OPENAI):
            raise_if_any([("endpoint", ENDPOINT_RULE_MESSAGE)])
        return self

    def served_locally(self) -> GenerationSpec:
        """These settings for a model no endpoint serves (a fine-tuned one): the endpoint's backend becomes
        `auto`."""
        if self.backend is not Backend.OPENAI:
            return self
        return self.model_copy(update={"backend": Backend.AUTO, "endpoint": None})
