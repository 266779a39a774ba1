"""`generate/filter_report.json`: where the generated candidates went, step by step.

The generate stage writes it; the train and evaluate stages and `selfguide bench` read it, all through
`FilterReport`. At each step `in == kept + sum(dropped)`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pydantic import Field

from selfguide.artifacts import atomic_write_json
from selfguide.contract.results import FunnelStep
from selfguide.spec.base import SpecModel
from selfguide.spec.generation import AnnotationMethod, Calibration

Drops = dict[str, dict[str, int]]
"""Dropped candidates per filter, then per reason."""


class Prompts(SpecModel):
    """Input generation's prompts."""

    built: int
    trimmed: int
    """Prompts that fitted only after dropping pool examples."""
    skipped: dict[str, int]
    """Prompts not sent, per reason."""


class Step(SpecModel):
    """One step of the funnel."""

    entered: int = Field(alias="in")
    kept: int
    dropped: Drops

    def reasons(self) -> Counter[str]:
        """Dropped candidates per reason, over every filter of the step."""
        counts: Counter[str] = Counter()
        for by_reason in self.dropped.values():
            for reason, n in by_reason.items():
                counts[reason or "unspecified"] += n
        return counts


class AnnotationStep(Step):
    """Annotation: the step's counts and how labels were decided."""

    samples_dropped: Drops
    """Annotation samples (votes) dropped, per filter and reason."""
    method: AnnotationMethod
    calibration: Calibration | None = None
    """Likelihood annotation only, like `min_margin` and `label_means`."""
    min_margin: float | None = None
    label_means: dict[str, float] | None = None


class BalanceStep(Step):
    """Class balancing: the step's counts and the examples per label before and after."""

    before: dict[str, int]
    after: dict[str, int]
    missing_labels: list[str]


class FilterReport(SpecModel):
    """The generate stage's filter funnel: generated inputs, input filters, annotation, class balancing."""

    prompts: Prompts
    inputs: Step
    annotation: AnnotationStep
    final: int
    """Training examples kept."""
    missing_labels: list[str] | None = None
    """Classification: labels with no training example."""
    balance: BalanceStep | None = None
    """Only when classes were balanced."""

    def steps(self) -> list[tuple[str, Step]]:
        """The steps that ran, by name: `inputs`, `annotation`, `balance`."""
        named: list[tuple[str, Step | None]] = [
            ("inputs", self.inputs), ("annotation", self.annotation), ("balance", self.balance)]
        return [(name, step) for name, step in named if step is not None]

    def funnel(self) -> list[FunnelStep]:
        """The steps as the stage result's counts: what entered each step, what it kept, what it dropped and why."""
        return [FunnelStep(step=name, entered=step.entered, kept=step.kept, dropped=dict(step.reasons()))
                for name, step in self.steps()]

    def write(self, path: Path) -> None:
        atomic_write_json(path, self.to_camel_dict())

    @classmethod
    def read(cls, path: Path) -> FilterReport:
        return cls.model_validate_json(path.read_bytes())
