"""Classification labels beyond the paper's vote: label-likelihood decisions, batch calibration, and which
labels to ask input generation for next.

Batch Calibration (Zhou et al., ICLR 2024): a model's score for a label carries a prior that does not depend on
the input (a 135M model prefers one label for almost everything). Subtracting each label's mean score over the
job's generated inputs removes it, so the decision rests on what differs between inputs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Scores = Mapping[str, float]
"""Log-probability of each label as the model's answer to one input's prompt."""


def label_means(table: Sequence[Scores]) -> dict[str, float]:
    """Each label's mean score over the table (the content-free estimate of its prior)."""
    if not table:
        return {}
    return {label: math.fsum(row[label] for row in table) / len(table) for label in table[0]}


def calibrate(scores: Scores, means: Mapping[str, float]) -> dict[str, float]:
    """`scores` less each label's mean over the batch."""
    return {label: value - means.get(label, 0.0) for label, value in scores.items()}


@dataclass(frozen=True)
class Decision:
    label: str
    margin: float
    """Score of the winner minus the runner-up's (nats); infinite with a single label."""


def decide(scores: Scores) -> Decision:
    """The best-scoring label; ties go to the label listed first."""
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    margin = ranked[0][1] - ranked[1][1] if len(ranked) > 1 else math.inf
    return Decision(ranked[0][0], margin)


def fill_weights(labels: Sequence[str], counts: Mapping[str, int]) -> list[int]:
    """Draw weights that favour labels short of examples: `1 + (largest count - count)` per label, so a label
    that has as many as the best-filled one keeps a small chance and an empty one is asked for most."""
    top = max((counts.get(label, 0) for label in labels), default=0)
    return [1 + top - counts.get(label, 0) for label in labels]


def draw_labels(rng: random.Random, labels: Sequence[str], count: int, counts: Mapping[str, int] | None) -> list[str]:
    """`count` labels to ask for: uniform when `counts` is None (the paper), else weighted by `fill_weights`."""
    if counts is None:
        return [rng.choice(labels) for _ in range(count)]
    return rng.choices(list(labels), weights=fill_weights(labels, counts), k=count)
