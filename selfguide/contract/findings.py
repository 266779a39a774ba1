"""What the evidence says about a classification job beyond its scores: a collapse, or an annotator that cannot
teach the task. Named in the report, the job's status, the `selfguide bench` table and the quality gate, whatever
the scores (a collapsed model can "win" when prompting writes invalid labels).

The rules are pure functions of labels the caller has already mapped onto the task's label set:

* `one_label_training_set`: one label makes up at least `TRAINING_SHARE` (90%) of the training set. Class
  balancing (on by default) evens out every label the annotator gave, so a set this skewed means the annotator
  gave (almost) one label, and a model tuned on it learns that label, not the task.
* `one_answer_model`: the tuned classifier names one label for at least `ANSWER_SHARE` (90%) of the evaluation
  items *and* for at least 90% of the items whose gold label is another one (`MIN_OTHER_ITEMS`, 5, of them at
  least). The second condition keeps a skewed gold set honest: a model that answers the majority label for 95%
  of a set that is 95% that label, yet gets the other items right, reads its input; one that answers it whatever
  the gold label does not.
* `annotator_at_majority`: the annotator labels gold inputs right no more often than always answering the most
  common gold label would. Self-training teaches what the annotator knows, so it cannot help there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from selfguide.spec.base import SpecModel
from selfguide.spec.generation import AnnotationMethod, Calibration
from selfguide.spec.task import MAX_LABEL

TRAINING_SHARE = 0.9
"""A training set with at least this share of one label is a one-label training set."""
ANSWER_SHARE = 0.9
"""A classifier naming one label for at least this share of all items, and of the items whose gold label is
another one, gives one answer to every input."""
MIN_OTHER_ITEMS = 5
"""Fewer items with another gold label than this cannot show that the classifier ignores its input."""

Count = Annotated[int, Field(ge=0, le=2**53)]
Percent = Annotated[float, Field(ge=0, le=100)]
Label = Annotated[str, Field(max_length=MAX_LABEL)]


def label_counts(labels: Sequence[str | None]) -> dict[str, int]:
    """How often each label occurs (None, an answer that names no label, is not counted), most common first."""
    return dict(Counter(label for label in labels if label is not None).most_common())


class OneLabelTrainingSet(SpecModel):
    """The training set is (almost) one label."""

    label: Label
    count: Count
    """Training examples with that label."""
    total: Count
    """Training examples."""

    def message(self) -> str:
        return f"one-label training set: {self.count} of {self.total} training examples are labelled {self.label!r}"


class OneAnswerModel(SpecModel):
    """The tuned classifier gives one answer to (nearly) every evaluation item, whatever its gold label."""

    label: Label
    count: Count
    """Evaluation items it answered with that label."""
    total: Count
    """Evaluation items."""
    other_answered: Count
    """Of the items whose gold label is another one, those it answered with that label."""
    other_gold: Count
    """Items whose gold label is another one."""

    def message(self) -> str:
        return (f"collapsed classifier: SELF-GUIDE answers {self.label!r} to {self.count} of {self.total} evaluation "
                f"items, {self.other_answered} of the {self.other_gold} whose gold label is another")


class AnnotatorAtMajority(SpecModel):
    """The annotator is no better than the majority class on gold inputs: self-training cannot help."""

    accuracy: Percent
    """Gold inputs the annotator labels right."""
    majority_share: Percent
    """Gold inputs whose label is the most common one."""
    items: Count

    def message(self) -> str:
        return (f"self-training cannot help: the annotator labels {self.accuracy:.1f}% of {self.items} gold inputs "
                f"right, at or below the majority class ({self.majority_share:.1f}%)")


class AnnotatorAccuracy(SpecModel):
    """How well the annotator labels gold inputs, labelling them as it labels generated ones (the same method,
    prompt and calibration; no margin or pseudo-label filter)."""

    items: Count
    method: AnnotationMethod
    calibration: Calibration
    accuracy: Percent
    """Inputs it labelled right."""
    coverage: Percent
    """Inputs it gave a label at all (a vote without agreement gives none)."""
    majority_share: Percent
    """Inputs whose gold label is the most common one: what always answering that label scores."""

    def finding(self) -> AnnotatorAtMajority | None:
        return annotator_at_majority(self.accuracy, self.majority_share, self.items)

    def line(self) -> str:
        calibrated = f", {self.calibration.value} calibration" if self.method is AnnotationMethod.LIKELIHOOD else ""
        return (f"the annotator ({self.method.value}{calibrated}) labels {self.accuracy:.1f}% of {self.items} gold "
                f"inputs right (it gives {self.coverage:.1f}% a label); always answering the majority class scores "
                f"{self.majority_share:.1f}%")


class Findings(SpecModel):
    """Everything the rules found (a classification job; at least one field set)."""

    training_set: OneLabelTrainingSet | None = None
    answers: OneAnswerModel | None = None
    annotator: AnnotatorAtMajority | None = None

    @property
    def collapse(self) -> str | None:
        """What collapsed (the training set, the classifier or both), or None: this fails the quality gate."""
        found = [f.message() for f in (self.training_set, self.answers) if f is not None]
        return "; ".join(found) or None

    def messages(self) -> list[str]:
        return [f.message() for f in (self.training_set, self.answers, self.annotator) if f is not None]


def one_label_training_set(labels: Sequence[str]) -> OneLabelTrainingSet | None:
    """The training set's labels (one per example) hold one label at least `TRAINING_SHARE` of the time."""
    counts = label_counts(labels)
    if not counts:
        return None
    label, count = next(iter(counts.items()))
    if count < TRAINING_SHARE * len(labels):
        return None
    return OneLabelTrainingSet(label=label[:MAX_LABEL], count=count, total=len(labels))


def one_answer_model(answers: Sequence[str | None], gold: Sequence[str]) -> OneAnswerModel | None:
    """The classifier's `answers` (None: no label named) name one label for at least `ANSWER_SHARE` of the items
    and of the items whose `gold` label is another one (of which there are at least `MIN_OTHER_ITEMS`)."""
    assert len(answers) == len(gold), "one answer per gold label"
    counts = label_counts(answers)
    if not counts:
        return None
    label, count = next(iter(counts.items()))
    others = [answer for answer, truth in zip(answers, gold, strict=True) if truth != label]
    other_answered = sum(answer == label for answer in others)
    if (count < ANSWER_SHARE * len(answers) or len(others) < MIN_OTHER_ITEMS
            or other_answered < ANSWER_SHARE * len(others)):
        return None
    return OneAnswerModel(label=label[:MAX_LABEL], count=count, total=len(answers), other_answered=other_answered,
                          other_gold=len(others))


def annotator_at_majority(accuracy: float, majority_share: float, items: int) -> AnnotatorAtMajority | None:
    """The annotator's accuracy on `items` gold inputs (percent) is at or below the majority share (percent)."""
    if items == 0 or accuracy > majority_share:
        return None
    return AnnotatorAtMajority(accuracy=accuracy, majority_share=majority_share, items=items)


def findings(training: Sequence[str], answers: Sequence[str | None], gold: Sequence[str],
             annotator: AnnotatorAtMajority | None = None) -> Findings | None:
    """Every rule applied to a job's training labels and its tuned classifier's answers; None when none fires."""
    found = Findings(training_set=one_label_training_set(training), answers=one_answer_model(answers, gold),
                     annotator=annotator)
    return found if found.messages() else None
