"""What each stage reports when it succeeds: typed, bounded, and the same models everywhere.

A stage returns one of these; `selfguide stage` writes it into the termination message, the operator reads it
back with the same model and embeds it in the SelfGuideJob's status, and `selfguide run` prints its `line()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from statistics import mean
from typing import Annotated

from pydantic import Field

from selfguide.contract.findings import Findings
from selfguide.contract.intervals import paired_interval, too_few_items
from selfguide.spec.base import SpecModel

Count = Annotated[int, Field(ge=0, le=2**53)]
Score = Annotated[float, Field(ge=-1e9, le=1e9)]
Rate = Annotated[float, Field(ge=0, le=1e12)]
Key = Annotated[str, Field(min_length=1, max_length=64)]


class Metric(StrEnum):
    EXACT_MATCH = "exact_match"
    """Classification: Exact Match after SNI normalisation of the last label in the answer (0-100)."""
    ROUGE_L = "rouge_l"
    """Generation: token ROUGE-L F-measure with stemming, best over references (0-100)."""


class StageResult(SpecModel):
    """Base of the stage results. The cost fields are filled in by the runner around every stage."""

    wall_seconds: Rate | None = None
    """How long the stage ran (wall clock)."""
    gpus: Count | None = None
    """GPUs visible to the stage process (0 on CPU)."""
    gpu_seconds: Rate | None = None
    """GPUs x wall seconds: what the stage cost in accelerator time."""

    def line(self) -> str:
        """One line for people: `selfguide run`'s summary and the stage's message in the job's status."""
        raise NotImplementedError


class FunnelStep(SpecModel):
    """One step of the data funnel: how many candidates entered it and how many it kept."""

    step: Key
    """`inputs` (input filters), `annotation` (the vote or likelihood labelling), `balance` (class balancing)."""
    entered: Count = 0
    kept: Count = 0
    dropped: Annotated[dict[Key, Count], Field(max_length=32, default_factory=dict)]
    """Candidates this step dropped, per reason."""


class GenerateResult(StageResult):
    """What the `generate` stage produced."""

    examples: Count = 0
    """Training examples kept after every filter."""
    candidates: Count = 0
    """Inputs generated before filtering."""
    dropped: Annotated[dict[Key, Count], Field(max_length=64, default_factory=dict)]
    """Dropped candidates per reason (e.g. `duplicate`, `too_long`, `class_balance`)."""
    missing_labels: Annotated[list[Key], Field(max_length=64, default_factory=list)]
    """Classification: labels with no example in the training set (the model never annotated them)."""
    generated_tokens: Count = 0
    """Tokens the model generated (inputs and annotations)."""
    funnel: Annotated[list[FunnelStep], Field(max_length=8, default_factory=list)]
    """Where the candidates went, step by step: `candidates` enter the first step, `examples` leave the last."""
    tokens_per_second: Rate = 0.0

    def line(self) -> str:
        dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(self.dropped.items(), key=lambda x: -x[1]))
        missing = f"; no example of {', '.join(self.missing_labels)}" if self.missing_labels else ""
        return f"{self.examples} examples kept of {self.candidates} candidates" + (
            f" (dropped: {dropped})" if dropped else "") + missing


class TrainResult(StageResult):
    """What the `train` stage did."""

    examples: Count = 0
    steps: Count = 0
    epochs: Count = 0
    processes: Count = 1
    """Training processes (one per GPU under data parallelism)."""
    first_loss: Score | None = None
    final_loss: Score | None = None
    trainable_parameters: Count = 0
    tokens_per_second: Rate = 0.0
    method: Annotated[str, Field(max_length=16)] = "lora"

    def line(self) -> str:
        if self.first_loss is None or self.final_loss is None:
            return f"{self.steps} steps on {self.examples} examples"
        return f"loss {self.first_loss:.3f} -> {self.final_loss:.3f}, {self.steps} steps"


class GateResult(SpecModel):
    """The quality gate's verdict: SELF-GUIDE against few-shot prompting of the base model, on the same items."""

    passed: bool
    min_improvement: Score
    """The improvement the spec asks for (`spec.evaluation.gate.minImprovement`)."""
    baseline: Score
    """Few-shot prompting of the base model."""
    finetuned: Score
    """The fine-tuned model."""
    improvement: Score
    """finetuned - baseline."""
    lower: Score
    """The lower end of the paired interval of the improvement (bootstrap over the items): the gate's test."""
    upper: Score
    confidence: Annotated[float, Field(ge=0.5, le=0.999)]
    items: Count
    """Evaluation items both systems answered."""
    note: Annotated[str | None, Field(max_length=512)] = None
    """Set when the evaluation set is too small to show the required improvement (`too_few_items`)."""
    collapse: Annotated[str | None, Field(max_length=1024)] = None
    """Set when the training set or the tuned classifier collapsed to one label (`Findings.collapse`): the gate
    fails whatever the scores."""

    def message(self) -> str:
        verdict = "passed" if self.passed else "failed"
        relation = ">=" if self.lower >= self.min_improvement else "<"
        collapse = f" whatever the score ({self.collapse})" if self.collapse else ""
        return (f"quality gate {verdict}{collapse}: SELF-GUIDE {self.finetuned:.2f} vs few-shot prompting "
                f"{self.baseline:.2f} "
                f"on {self.items} items (improvement {self.improvement:+.2f}, {self.confidence:.0%} interval "
                f"[{self.lower:+.2f}, {self.upper:+.2f}]; lower end {relation} required {self.min_improvement:+.2f})"
                + (f"; {self.note}" if self.note and not self.passed else ""))


def judge(min_improvement: float, baseline: Sequence[float], finetuned: Sequence[float],
          confidence: float = 0.95, collapse: str | None = None) -> GateResult:
    """The gate's verdict on the per-item scores of both systems (same items, same order): it passes when the
    lower end of the paired `confidence` interval of the improvement reaches `min_improvement` and nothing
    `collapse`d."""
    assert len(baseline) == len(finetuned), "the systems must answer the same items"
    low, high = paired_interval([f - b for b, f in zip(baseline, finetuned, strict=True)], confidence)
    base, tuned = (mean(baseline), mean(finetuned)) if baseline else (0.0, 0.0)
    return GateResult(passed=round(low, 2) >= min_improvement and collapse is None, min_improvement=min_improvement,
                      baseline=round(base, 2), finetuned=round(tuned, 2), improvement=round(tuned - base, 2),
                      lower=round(low, 2), upper=round(high, 2), confidence=confidence, items=len(baseline),
                      note=too_few_items(len(baseline), min_improvement, confidence), collapse=collapse)


class EvaluateResult(StageResult):
    """Few-shot prompting of the base model versus the fine-tuned model, on the evaluation set."""

    metric: Metric
    examples: Count = 0
    baseline: Score
    """Few-shot prompting of the base model."""
    finetuned: Score
    """The SELF-GUIDE model (base + adapter)."""
    delta: Score
    interval: Annotated[list[Score], Field(min_length=2, max_length=2)] | None = None
    """The 95% paired interval of `delta` (a bootstrap over the evaluation items): how far the evaluation set can
    tell the two systems apart."""
    scores: Annotated[dict[Key, Score], Field(max_length=16, default_factory=dict)]
    """Every scored system, by name (`fewShotPrompting`, `selfGuide`, `fewShotFinetuning`)."""
    gate: GateResult | None = None
    """The quality gate's verdict, when `spec.evaluation.gate` is set."""
    findings: Findings | None = None
    """Classification: a one-label training set, a classifier that gives one answer to every input, or an
    annotator no better than the majority class, when the evidence shows one."""

    def line(self) -> str:
        gate = "" if self.gate is None else f"; quality gate {'passed' if self.gate.passed else 'FAILED'}"
        found = "".join(f"; {message}" for message in self.findings.messages()) if self.findings else ""
        interval = "" if self.interval is None else (
            f", 95% interval [{self.interval[0]:+.1f}, {self.interval[1]:+.1f}] over {self.examples} items")
        return (f"{self.metric.value}: few-shot {self.baseline:.1f} -> SELF-GUIDE {self.finetuned:.1f} "
                f"({self.delta:+.1f}{interval}){gate}{found}")

    @property
    def publishable(self) -> bool:
        """The fine-tuned model may be published: no gate, or a gate it passed."""
        return self.gate is None or self.gate.passed
