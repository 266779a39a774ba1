"""Paired intervals for the quality gate: how sure an evaluation set of n items can be that the fine-tuned model
beats few-shot prompting. Pure Python (the operator imports this package and has no numpy); seeded, so the same
scores always give the same verdict."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from selfguide.spec import SelfGuideJobSpec

RESAMPLES = 4000
"""Bootstrap resamples: the 2.5th percentile of 4,000 is stable to about a tenth of a point on 200 items."""
SEED = 0


Runs = Sequence[Sequence[float]]
"""One task's per-item differences (fine-tuned minus prompting), one row per seed, the same items in every row."""


def paired_interval(differences: Sequence[float], confidence: float, resamples: int = RESAMPLES,
                    seed: int = SEED) -> tuple[float, float]:
    """The two-sided `confidence` percentile-bootstrap interval of the mean of per-item `differences`
    (fine-tuned minus prompting, on the same items), resampling items with replacement."""
    return average_interval([[differences]], confidence, resamples, seed)


def average_interval(tasks: Sequence[Runs], confidence: float, resamples: int = RESAMPLES,
                     seed: int = SEED) -> tuple[float, float]:
    """The interval of the average over `tasks` of each task's mean difference: every resample draws, per task,
    seeds with replacement (when there are several) and items with replacement (the same items for every seed
    drawn, which keeps each item's pairing across seeds)."""
    tasks = [[run for run in runs if run] for runs in tasks]
    tasks = [runs for runs in tasks if runs]
    if not tasks:
        return (0.0, 0.0)
    rng = random.Random(seed)
    means = []
    for _ in range(resamples):
        means.append(sum(_mean_at(runs, *_draw(rng, runs)) for runs in tasks) / len(tasks))
    return _percentiles(means, confidence)


def worst_task_intervals(configurations: Sequence[Sequence[Runs]], best: int, confidence: float,
                         resamples: int = RESAMPLES, seed: int = SEED) -> list[tuple[float, float]]:
    """For the paper's selection rule with evidence: per configuration (each a list of tasks' runs, the same tasks,
    seeds and items in every configuration), the interval of the worst task's mean difference of configuration
    `best` minus its own. Every resample draws, per task, the same seeds and items for all configurations, so the
    comparison is paired. A lower end above 0 says `best` beats that configuration on the rule; otherwise the
    evidence cannot tell them apart. ValueError when the configurations' tasks, seeds or items differ in shape or a
    task has no per-item scores (rows written before they were kept)."""
    shapes = {tuple((len(runs), len(runs[0]) if runs else 0) for runs in tasks) for tasks in configurations}
    if len(shapes) != 1:
        raise ValueError("the configurations were not run on the same tasks, seeds and items")
    if not all(all(shape) for shape in next(iter(shapes))):
        raise ValueError("a task has no per-item scores")
    rng = random.Random(seed)
    samples: list[list[float]] = [[] for _ in configurations]
    for _ in range(resamples):
        draws = [_draw(rng, runs) for runs in configurations[best]]
        worst = [min(_mean_at(runs, *draw) for runs, draw in zip(tasks, draws, strict=True)) for tasks in configurations]
        for k, value in enumerate(worst):
            samples[k].append(worst[best] - value)
    return [_percentiles(values, confidence) for values in samples]


def _draw(rng: random.Random, runs: Runs) -> tuple[list[int], list[int]]:
    """One bootstrap draw of a task: seeds with replacement (when there are several), then items."""
    seeds = [rng.randrange(len(runs)) for _ in runs] if len(runs) > 1 else [0]
    items = len(runs[0])
    return seeds, [rng.randrange(items) for _ in range(items)]


def _mean_at(runs: Runs, seeds: Sequence[int], items: Sequence[int]) -> float:
    return sum(runs[s][i] for s in seeds for i in items) / (len(seeds) * len(items))


def _percentiles(values: list[float], confidence: float) -> tuple[float, float]:
    """The two-sided `confidence` percentile interval of bootstrap `values`."""
    values = sorted(values)
    tail = (1.0 - confidence) / 2
    low = values[max(0, math.floor(tail * len(values)))]
    high = values[min(len(values) - 1, math.ceil((1.0 - tail) * len(values)) - 1)]
    return (low, high)


def mcnemar(baseline: Sequence[Sequence[float]], finetuned: Sequence[Sequence[float]]) -> float:
    """The exact two-sided McNemar p-value for exact-match scores (0 or 100 per item), pooled over seeds: of the
    items only one system got right, how unlikely a split this uneven is if both were equally good."""
    pairs = [(b, f) for bs, fs in zip(baseline, finetuned, strict=True) for b, f in zip(bs, fs, strict=True)]
    only_base = sum(b > f for b, f in pairs)
    only_tuned = sum(f > b for b, f in pairs)
    n = only_base + only_tuned
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, x) for x in range(min(only_base, only_tuned) + 1)) / (1 << n)
    return min(1.0, 2 * tail)


def wins_needed(items: int, min_improvement: float, confidence: float, best: float = 100.0) -> int | None:
    """The fewest items on which the fine-tuned model must beat prompting by `best` points (and lose on none) for
    the interval's lower end to reach `min_improvement`: an exact binomial quantile, since resampling such a set
    draws each winning item with probability k/n. None when even every item winning is not enough."""
    tail = (1.0 - confidence) / 2
    for wins in range(1, items + 1):
        p = wins / items
        cumulative, lower = 0.0, items
        for x in range(items + 1):
            cumulative += math.comb(items, x) * p ** x * (1 - p) ** (items - x)
            if cumulative >= tail:
                lower = x
                break
        if best * lower / items >= min_improvement:
            return wins
    return None


def too_few_items(items: int, min_improvement: float, confidence: float) -> str | None:
    """Why an evaluation set of `items` items can hardly show `min_improvement` (None when it can): the gate then
    passes only if the fine-tuned model wins on at least half of the items and loses on none."""
    wins = wins_needed(items, min_improvement, confidence)
    if wins is not None and 2 * wins < items:
        return None
    need = "no" if wins is None else f"at least {wins} of the {items}"
    return (f"{items} evaluation items are too few for the gate: its {confidence:.0%} interval reaches "
            f"{min_improvement:+.2f} only if the fine-tuned model is right where few-shot prompting is wrong on "
            f"{need} items and never the other way; use more items")


def gate_sample_note(spec: SelfGuideJobSpec) -> str | None:
    """`too_few_items` for a job whose gated evaluation set is inline (its size is known before anything runs)."""
    evaluation = spec.evaluation
    if evaluation is None or evaluation.gate is None or not evaluation.examples:
        return None
    items = min(len(evaluation.examples), evaluation.max_examples or len(evaluation.examples))
    return too_few_items(items, evaluation.gate.min_improvement, evaluation.gate.confidence)
