"""`selfguide sweep`: SELF-GUIDE's "One Parameter Fits All" search.

Every configuration of a grid (input-generation temperature x length filters on/off x epochs) runs on
several tasks, scored on their validation splits; the configuration that maximises the *worst* task's
improvement over few-shot prompting wins (the paper's rule), and the evidence for the choice is given: with
`seeds` runs per configuration, a paired bootstrap over tasks' items and seeds puts an interval on the best
configuration's lead in the rule over each other one, which is `worse` only where that interval excludes 0 and
otherwise `no difference`. Configurations that share generation settings
for a task share one `generate` stage: only training and evaluation run again; configurations whose input
generation is the same (recipes that differ in annotation) start from the inputs of the first (`selfguide.stages.generate.reuse`);
configurations that are the same for a task (recipes that differ only in `forClassification` on a generation task)
share its whole run.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from selfguide.artifacts import atomic_write_json, atomic_write_text, config_hash
from selfguide.contract.intervals import worst_task_intervals
from selfguide.experiments.bench import (
    CONFIDENCE,
    BenchTask,
    TaskScore,
    build_job,
    combine_seeds,
    deep_merge,
    overrides_for,
    run_task,
    seed_run,
)
from selfguide.stages.evaluate.scoring import mean
from selfguide.stages.generate.declaration import GENERATE
from selfguide.stages.generate.reuse import inputs_key


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
    against_best: tuple[float, float] = (0.0, 0.0)
    """The `CONFIDENCE` interval of the best configuration's worst-task delta minus this one's (paired over tasks,
    seeds and items; `worst_task_intervals`)."""

    @property
    def worst_delta(self) -> float:
        return paper_rule(self.scores)[0]

    @property
    def mean_delta(self) -> float:
        return paper_rule(self.scores)[1]

    @property
    def verdict(self) -> str:
        """Against the best configuration: `worse` when the evidence says so, else `no difference`."""
        return "worse" if self.against_best[0] > 0 else "no difference"


def with_evidence(results: Sequence[SweepResult]) -> tuple[SweepResult, list[SweepResult]]:
    """The rule's winner (by its point estimates) and every result with the interval of the winner's lead on it."""
    best = max(range(len(results)), key=lambda k: paper_rule(results[k].scores))
    intervals = worst_task_intervals([[s.differences for s in r.scores] for r in results], best, CONFIDENCE)
    ranked = [replace(r, against_best=interval) for r, interval in zip(results, intervals, strict=True)]
    return ranked[best], ranked


def evidence_line(best: SweepResult, results: Sequence[SweepResult]) -> str:
    """What the rule's choice rests on: the configurations the evidence puts below it, and those it cannot."""
    others = [r for r in results if r is not best]
    if not others:
        return f"best: {best.config.label} (the only configuration)"
    beaten = [r.config.label for r in others if r.verdict == "worse"]
    tied = [r.config.label for r in others if r.verdict != "worse"]
    line = f"best: {best.config.label} (worst-task delta {best.worst_delta:+.1f})"
    if not tied:
        return f"{line}; better than every other configuration ({CONFIDENCE:.0%} intervals)"
    return (f"{line}; no difference from {', '.join(tied)} ({CONFIDENCE:.0%} intervals of the worst-task delta "
            f"include 0: the choice among them is not supported by the evidence)"
            + (f"; better than {', '.join(beaten)}" if beaten else ""))


def run_sweep(task_files: Sequence[Path], workdir: Path, configs: Sequence[SweepConfig], base: dict[str, Any],
              max_eval: int | None = None, seeds: int = 1) -> tuple[SweepResult, list[SweepResult]]:
    """Run every configuration on every task (`seeds` times, the generation and training seeds moved together,
    `seed-<k>` directories when several); return the winner and all results, with the evidence for it."""
    tasks = [BenchTask.load(path) for path in task_files]
    runs: dict[tuple[str, str], tuple[Path, TaskScore]] = {}
    """(task, hash of the task's resolved overrides) -> the directory and score of the run that made it."""
    inputs: dict[tuple[str, str], Path] = {}
    """(task, hash of its input-generation settings) -> the first run that generated those inputs."""
    results = []
    for config in configs:
        scores = []
        for task in tasks:
            merged = deep_merge(base, config.overrides())
            task_dir = workdir / task.name / config.directory
            key = (task.name, config_hash(overrides_for(task.task_type, merged)))
            if key in runs:
                _link(task_dir, runs[key][0])
            else:
                seeded_runs = [_run_seed(task, workdir, task_dir, merged, deep_merge(base, config.generation_overrides()),
                                         k, seeds, max_eval, inputs) for k in range(seeds)]
                runs[key] = task_dir, seeded_runs[0] if seeds == 1 else combine_seeds(seeded_runs)
            scores.append(runs[key][1])
        results.append(SweepResult(config, scores))
    best, results = with_evidence(results)
    atomic_write_text(workdir / "sweep.md", sweep_table(results, best) + "\n\n" + evidence_line(best, results) + "\n")
    atomic_write_json(workdir / "sweep.json", {
        "rule": "maximise the worst task's improvement over few-shot prompting (validation splits); a "
                "configuration is worse than the best only where the paired interval of the difference excludes 0",
        "best": best.config.describe(),
        "seeds": seeds,
        "confidence": CONFIDENCE,
        "results": [{"config": r.config.describe(), "worstDelta": r.worst_delta, "meanDelta": r.mean_delta,
                     "againstBest": [round(v, 2) for v in r.against_best], "verdict": r.verdict,
                     "tasks": {s.task: round(s.delta, 2) for s in r.scores}} for r in results],
    })
    return best, results


def _run_seed(task: BenchTask, workdir: Path, task_dir: Path, overrides: dict[str, Any],
              generation: dict[str, Any], offset: int, seeds: int, max_eval: int | None,
              inputs: dict[tuple[str, str], Path]) -> TaskScore:
    """One seed of one configuration on one task; its `generate` stage is shared by every configuration with the
    same generation settings, and its inputs by every one with the same input-generation settings."""
    run_dir, overrides = seed_run(task.task_type, task_dir, overrides, offset, seeds)
    generation = seed_run(task.task_type, task_dir, generation, offset, seeds)[1]
    _link(run_dir / GENERATE.name, workdir / task.name / f"{GENERATE.name}-{config_hash(generation)}")
    spec = build_job(task, run_dir / "validation.jsonl", overrides, max_eval).spec
    first = inputs.setdefault((task.name, inputs_key(spec)), run_dir)
    return run_task(task, run_dir, overrides, "validation", max_eval, inputs_from=None if first == run_dir else first)


def sweep_table(results: Sequence[SweepResult], best: SweepResult) -> str:
    tasks = [s.task for s in results[0].scores]
    lines = ["| configuration | " + " | ".join(tasks) + f" | worst | mean | best minus this, worst task "
             f"[{CONFIDENCE:.0%}] | verdict |",
             "| --- | " + " | ".join("---:" for _ in tasks) + " | ---: | ---: | ---: | --- |"]
    for r in results:
        mark = " **(best)**" if r is best else ""
        cells = " | ".join(f"{s.delta:+.1f}" for s in r.scores)
        lead = "-" if r is best else f"[{r.against_best[0]:+.1f}, {r.against_best[1]:+.1f}]"
        verdict = "chosen" if r is best else r.verdict
        lines.append(f"| {r.config.label}{mark} | {cells} | {r.worst_delta:+.1f} | {r.mean_delta:+.1f} | {lead} | "
                     f"{verdict} |")
    return "\n".join(lines)
