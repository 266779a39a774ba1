"""`selfguide sweep`: SELF-GUIDE's "One Parameter Fits All" search.

Every configuration of a grid (input-generation temperature x length filters on/off x epochs) runs on
several tasks, scored on their validation splits; the configuration that maximises the *worst* task's
improvement over few-shot prompting wins (the paper's rule). Configurations that share generation settings
for a task share one `generate` stage: only training and evaluation run again; configurations whose input
generation is the same (recipes that differ in annotation) start from the inputs of the first (`bench.reuse_inputs`);
configurations that are the same for a task (recipes that differ only in `forClassification` on a generation task)
share its whole run.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfguide.artifacts import atomic_write_json, atomic_write_text, config_hash
from selfguide.experiments.bench import BenchTask, TaskScore, build_job, deep_merge, overrides_for, run_task
from selfguide.stages.evaluate.scoring import mean
from selfguide.stages.generate.stage import inputs_settings


@dataclass(frozen=True)
class Recipe:
    """A named bench configuration (YAML of spec fields, with optional `forClassification`/`forGeneration`
    sections), e.g. the paper's method or the calibrated one for small models."""

    name: str
    overrides: dict[str, Any]


PAPER = Recipe("paper", {})


@dataclass(frozen=True)
class SweepConfig:
    temperature: float
    length_filters: bool
    epochs: int
    recipe: Recipe = PAPER

    def generation_overrides(self) -> dict[str, Any]:
        return deep_merge(self.recipe.overrides, {"generation": {
            "inputs": {"temperature": self.temperature},
            "filtering": {"inputLength": {"enabled": self.length_filters},
                          "outputLength": {"enabled": self.length_filters}},
        }})

    def overrides(self) -> dict[str, Any]:
        return deep_merge(self.generation_overrides(), {"training": {"epochs": self.epochs}})

    @property
    def label(self) -> str:
        return (f"{self.recipe.name} T={self.temperature} length-filters={'on' if self.length_filters else 'off'} "
                f"epochs={self.epochs}")

    @property
    def directory(self) -> str:
        return f"{self.recipe.name}-T{self.temperature}-lf{int(self.length_filters)}-e{self.epochs}"

    def describe(self) -> dict[str, Any]:
        return {"recipe": self.recipe.name, "temperature": self.temperature, "lengthFilters": self.length_filters,
                "epochs": self.epochs}


def grid(temperatures: Sequence[float], length_filters: Sequence[bool], epochs: Sequence[int],
         recipes: Sequence[Recipe] = (PAPER,)) -> list[SweepConfig]:
    return [SweepConfig(t, f, e, r) for r, t, f, e in itertools.product(recipes, temperatures, length_filters, epochs)]


def _link(link: Path, target: Path) -> None:
    """`link` -> `target` (relative), unless it is already a link."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        os.symlink(os.path.relpath(target, link.parent), link)


def paper_rule(scores: Sequence[TaskScore]) -> tuple[float, float]:
    """The key "One Parameter Fits All" maximises over configurations: the worst task's improvement over few-shot
    prompting, then (breaking a tie) the mean improvement."""
    deltas = [s.delta for s in scores]
    return min(deltas), mean(deltas)


@dataclass(frozen=True)
class SweepResult:
    config: SweepConfig
    scores: list[TaskScore]

    @property
    def worst_delta(self) -> float:
        return paper_rule(self.scores)[0]

    @property
    def mean_delta(self) -> float:
        return paper_rule(self.scores)[1]


def run_sweep(task_files: Sequence[Path], workdir: Path, configs: Sequence[SweepConfig], base: dict[str, Any],
              max_eval: int | None = None) -> tuple[SweepResult, list[SweepResult]]:
    """Run every configuration on every task; return the winner and all results."""
    tasks = [BenchTask.load(path) for path in task_files]
    runs: dict[tuple[str, str], tuple[Path, TaskScore]] = {}
    """(task, hash of the task's resolved overrides) -> the directory and score of the run that made it."""
    inputs: dict[tuple[str, str], Path] = {}
    """(task, hash of its input-generation settings) -> the first run that generated those inputs."""
    results = []
    for config in configs:
        scores = []
        for task in tasks:
            overrides = overrides_for(task.task_type, deep_merge(base, config.overrides()))
            task_dir = workdir / task.name / config.directory
            key = (task.name, config_hash(overrides))
            if key in runs:
                _link(task_dir, runs[key][0])
            else:
                generation = overrides_for(task.task_type, deep_merge(base, config.generation_overrides()))
                _link(task_dir / "generate", workdir / task.name / f"generate-{config_hash(generation)}")
                spec = build_job(task, task_dir / "validation.jsonl", overrides, max_eval).spec
                first = inputs.setdefault((task.name, config_hash(inputs_settings(spec))), task_dir)
                runs[key] = task_dir, run_task(task, task_dir, overrides, "validation", max_eval,
                                               inputs_from=None if first == task_dir else first)
            scores.append(runs[key][1])
        results.append(SweepResult(config, scores))
    best = max(results, key=lambda r: paper_rule(r.scores))
    atomic_write_text(workdir / "sweep.md", sweep_table(results, best) + "\n")
    atomic_write_json(workdir / "sweep.json", {
        "rule": "maximise the worst task's improvement over few-shot prompting (validation splits)",
        "best": best.config.describe(),
        "results": [{"config": r.config.describe(), "worstDelta": r.worst_delta, "meanDelta": r.mean_delta,
                     "tasks": {s.task: round(s.delta, 2) for s in r.scores}} for r in results],
    })
    return best, results


def sweep_table(results: Sequence[SweepResult], best: SweepResult) -> str:
    tasks = [s.task for s in results[0].scores]
    lines = ["| configuration | " + " | ".join(tasks) + " | worst | mean |",
             "| --- | " + " | ".join("---:" for _ in tasks) + " | ---: | ---: |"]
    for r in results:
        mark = " **(best)**" if r is best else ""
        cells = " | ".join(f"{s.delta:+.1f}" for s in r.scores)
        lines.append(f"| {r.config.label}{mark} | {cells} | {r.worst_delta:+.1f} | {r.mean_delta:+.1f} |")
    return "\n".join(lines)
