"""`evaluate/report.json`: every system's answer and score per evaluation item, the quality gate's verdict and what
the evidence says beyond the scores (`Findings`).

The evaluate stage writes it; report.md, report.html and `selfguide bench` read it, all through
`EvaluationReport`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic.alias_generators import to_snake

from selfguide.artifacts import atomic_write_json
from selfguide.contract.findings import AnnotatorAccuracy, Findings
from selfguide.contract.results import GateResult, Metric
from selfguide.spec.base import SpecModel


class Answer(SpecModel):
    """One system's answer to one item."""

    answer: str
    score: float
    label: str | None = None
    """Classification: the label the answer names (the one scored), when it names one."""


class Prediction(SpecModel):
    """One evaluation item and every system's answer."""

    input: str
    gold: str
    few_shot_prompting: Answer
    self_guide: Answer
    self_icl: Answer | None = None
    few_shot_finetuning: Answer | None = None

    def answer(self, system: str) -> Answer | None:
        """The answer of `system` (`fewShotPrompting`, `selfGuide`, `selfIcl`, `fewShotFinetuning`), when scored."""
        answer: Answer | None = getattr(self, to_snake(system))
        return answer


class SelfIcl(SpecModel):
    """How the Self-ICL baseline's prompt was built."""

    generated_demonstrations: int
    """Generated examples shown beside the gold ones."""
    prompt_tokens: int
    budget: int
    """`generation.maxPromptTokens`."""


class Baselines(SpecModel):
    self_icl: SelfIcl | None = None


class LabelCounts(SpecModel):
    """Classification: how often each label occurs, most common first."""

    gold: dict[str, int]
    """In the evaluation set's gold outputs."""
    training: dict[str, int]
    """In the training set."""
    answers: dict[str, dict[str, int]]
    """Per system, in its answers (an answer that names no label is not counted)."""


class EvaluationReport(SpecModel):
    """The evaluate stage's report."""

    metric: Metric
    metric_variant: str
    """How the metric was computed."""
    examples: int
    scores: dict[str, float]
    """Every scored system's mean score, by name (as in `Prediction.answer`)."""
    baseline: float
    """Few-shot prompting of the base model."""
    finetuned: float
    """SELF-GUIDE."""
    delta: float
    predictions: list[Prediction]
    baselines: Baselines | None = None
    gate: GateResult | None = None
    labels: LabelCounts | None = None
    annotator: AnnotatorAccuracy | None = None
    """`spec.evaluation.annotatorAccuracy`: the annotator's accuracy on the evaluation inputs."""
    findings: Findings | None = None

    def item_scores(self, system: str) -> list[float]:
        """The per-item scores of `system`, in item order."""
        return [answer.score for p in self.predictions if (answer := p.answer(system)) is not None]

    def label_rows(self) -> list[tuple[str, list[int]]]:
        """Classification: per label, how often the gold outputs, the training set and each system's answers have it
        (columns: gold, training set, then the systems of `self.scores`), and answers that name no label."""
        counts = self.labels
        if counts is None:
            return []
        columns = [counts.gold, counts.training, *(counts.answers.get(name, {}) for name in self.scores)]
        labels = list(dict.fromkeys(label for column in columns for label in column))
        rows = [(label, [column.get(label, 0) for column in columns]) for label in labels]
        unlabelled = [0, 0, *(self.examples - sum(counts.answers.get(name, {}).values()) for name in self.scores)]
        return rows + ([("(no label)", unlabelled)] if any(unlabelled) else [])

    def write(self, path: Path) -> None:
        atomic_write_json(path, self.to_camel_dict())

    @classmethod
    def read(cls, path: Path) -> EvaluationReport:
        return cls.model_validate_json(path.read_bytes())
