"""The gate's paired interval and its sample-size warning (the verdicts themselves: tests/operator/test_publication.py)."""

from __future__ import annotations

import random

import pytest

from selfguide.contract.intervals import (
    gate_sample_note,
    paired_interval,
    too_few_items,
    wins_needed,
    worst_task_intervals,
)
from selfguide.spec import SelfGuideJobSpec
from tests import manifests
from tests.stage_runs import run_cli, write_manifest


def test_the_interval_is_seeded_brackets_the_mean_and_narrows_with_more_items():
    rng = random.Random(1)
    small = [rng.choice([100.0, 0.0, 0.0, -100.0]) for _ in range(40)]
    large = small * 10
    assert paired_interval(small, 0.95) == paired_interval(small, 0.95)
    low, high = paired_interval(small, 0.95)
    assert low < sum(small) / len(small) < high
    low10, high10 = paired_interval(large, 0.95)
    assert high10 - low10 < (high - low) / 2  # about 1/sqrt(10) as wide
    assert paired_interval([7.0] * 5, 0.95) == (7.0, 7.0) and paired_interval([], 0.95) == (0.0, 0.0)


def test_the_wins_a_set_needs_grow_with_the_requirement_and_shrink_with_the_set():
    assert wins_needed(200, 2, 0.95) < wins_needed(200, 5, 0.95) < wins_needed(200, 20, 0.95)
    assert wins_needed(50, 2, 0.95) / 50 > wins_needed(200, 2, 0.95) / 200
    assert wins_needed(10, 100.5, 0.95) is None  # no set shows more than every item winning
    assert too_few_items(200, 2, 0.95) is None
    note = too_few_items(6, 2, 0.95)
    assert note and "at least 3 of the 6 items" in note


def spec_with(items: int, gate: dict | None) -> SelfGuideJobSpec:
    document = manifests.generation()["spec"]
    document["evaluation"] = {"examples": [{"input": f"i{k}", "output": f"o{k}"} for k in range(items)]}
    if gate is not None:
        document["evaluation"]["gate"] = gate
    return SelfGuideJobSpec.model_validate(document)


@pytest.mark.parametrize(("items", "gate", "warned"), [
    (3, {"minImprovement": 2}, True), (40, {"minImprovement": 2}, False), (3, None, False),
    (12, {"minImprovement": 20}, True),
])
def test_validate_warns_when_an_inline_gated_set_is_too_small(tmp_path, items, gate, warned):
    assert (gate_sample_note(spec_with(items, gate)) is not None) == warned
    document = manifests.generation()
    document["spec"] = spec_with(items, gate).to_camel_dict()
    result = run_cli("validate", write_manifest(tmp_path / "job.yaml", document))
    assert result.returncode == 0 and "is valid" in result.stdout
    assert ("warning: spec.evaluation.gate: " in result.stdout) == warned


def test_the_worst_task_rule_with_evidence_separates_a_clear_lead_and_not_a_noisy_one():
    """Configurations: lists of tasks' runs (per seed, per item: fine-tuned minus prompting). The interval is of the
    best configuration's worst-task delta minus each one's, paired over the same draws."""
    rng = random.Random(2)

    def task(centre: float, seeds: int = 2, items: int = 60) -> list[list[float]]:
        return [[centre + rng.choice([-20.0, 0.0, 0.0, 20.0]) for _ in range(items)] for _ in range(seeds)]

    strong = [task(10.0), task(8.0)]
    weak = [task(-30.0), task(9.0)]  # its worst task is far below: separated
    close = [task(9.0), task(7.0)]   # within noise of the best: not separated
    best, against_weak, against_close = worst_task_intervals([strong, weak, close], 0, 0.95)
    assert best == (0.0, 0.0)
    def worst(configuration: list[list[list[float]]]) -> float:
        return min(sum(map(sum, runs)) / sum(map(len, runs)) for runs in configuration)

    assert 0 < against_weak[0] <= worst(strong) - worst(weak) <= against_weak[1]  # a lead of about 8 - (-30)
    assert against_close[0] < 0 < against_close[1]
    assert worst_task_intervals([strong, weak], 0, 0.95) == worst_task_intervals([strong, weak], 0, 0.95)
    with pytest.raises(ValueError, match="same tasks, seeds and items"):
        worst_task_intervals([strong, [task(1.0, seeds=3), task(1.0)]], 0, 0.95)
    with pytest.raises(ValueError, match="no per-item scores"):
        worst_task_intervals([[[], task(1.0)], [[], task(2.0)]], 0, 0.95)
