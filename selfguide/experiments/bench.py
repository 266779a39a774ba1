"""`selfguide bench`: the paper's comparison on Super-NaturalInstructions-style task files.

Each task runs the full pipeline in its own work directory (resumable: completed stages are skipped),
generating data from the task's few-shot examples only and scoring on its test split.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from selfguide.artifacts import atomic_write_jsonl, atomic_write_text, read_jsonl
from selfguide.contract.errors import InvalidInput
from selfguide.contract.evaluation_report import EvaluationReport
from selfguide.contract.filter_report import FilterReport
from selfguide.contract.findings import AnnotatorAccuracy, AnnotatorAtMajority
from selfguide.contract.intervals import average_interval, mcnemar
from selfguide.contract.layout import FILTER_REPORT, REPORT
from selfguide.experiments.annotator import annotator_accuracy
from selfguide.manifest import validate_object
from selfguide.pipeline import run_pipeline
from selfguide.spec import API_VERSION, KIND, EvalExample, SelfGuideJob, TaskType
from selfguide.stages.evaluate.scoring import mean


@dataclass(frozen=True)
class BenchTask:
    """One task file: `name`, `task_type`, `instruction`, `labels`, `examples`, `validation`, `test`."""

    name: str
    data: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> BenchTask:
        """The task in `path`; InvalidInput (exit code 2) for a file that is not one."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidInput(f"{path}: not a readable JSON task file ({error})") from None
        missing = [k for k in ("name", "task_type", "instruction", "examples", "test")
                   if not isinstance(data, dict) or k not in data]
        if missing:
            raise InvalidInput(f"{path}: not a task file (missing {', '.join(missing)})")
        return cls(data["name"], data)

    @property
    def task_type(self) -> TaskType:
        return TaskType(self.data["task_type"])


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        merged[key] = deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else copy.deepcopy(value)
    return merged


def job_name(task_name: str) -> str:
    """A DNS-label job name from a task name (`task190_snli_classification` -> `task190-snli-classification`)."""
    cleaned = "".join(c if c.isalnum() else "-" for c in task_name.lower()).strip("-")
    return cleaned[:52].rstrip("-")


TYPE_SECTIONS = {TaskType.CLASSIFICATION: "forClassification", TaskType.GENERATION: "forGeneration"}
"""Sections of a bench configuration that apply to one task type only (classification-only options such as
likelihood annotation would make a generation task invalid)."""


def overrides_for(task_type: TaskType, overrides: dict[str, Any]) -> dict[str, Any]:
    """The spec fields of a bench configuration that apply to a task of `task_type`."""
    common = {k: v for k, v in overrides.items() if k not in TYPE_SECTIONS.values()}
    return deep_merge(common, overrides.get(TYPE_SECTIONS[task_type]) or {})


def build_job(task: BenchTask, eval_path: Path, overrides: dict[str, Any], max_eval: int | None = None) -> SelfGuideJob:
    """A SelfGuideJob for the task: its instruction, labels and few-shot examples, scored on `eval_path`."""
    spec: dict[str, Any] = {
        "task": {
            "type": task.task_type.value,
            "instruction": task.data["instruction"],
            "examples": [{"input": e["input"], "output": e["output"]} for e in task.data["examples"]],
        },
        "evaluation": {"path": str(eval_path.resolve()), **({"maxExamples": max_eval} if max_eval else {})},
    }
    if task.task_type is TaskType.CLASSIFICATION:
        spec["task"]["labels"] = task.data["labels"]
    manifest = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": job_name(task.name)},
                "spec": deep_merge(spec, overrides_for(task.task_type, overrides))}
    return validate_object(manifest)


def write_eval_split(task: BenchTask, split: str, path: Path) -> Path:
    rows = ({"input": r["input"], "output": r["output"], **({"outputs": r["outputs"]} if r.get("outputs") else {})}
            for r in task.data[split])
    atomic_write_jsonl(path, rows)
    return path


CONFIDENCE = 0.95
"""Of every interval in the bench table."""


def verdict(low: float, high: float) -> str:
    """What an interval of a delta says: `better` or `worse` when it excludes zero, else `no difference`."""
    return "better" if low > 0 else "worse" if high < 0 else "no difference"


ANNOTATOR_ITEMS = 60
"""Validation inputs the annotator's accuracy is measured on by default (classification tasks)."""


@dataclass(frozen=True)
class TaskScore:
    task: str
    task_type: str
    metric: str
    baseline: float
    finetuned: float
    examples: int
    kept: int
    scores: dict[str, float]
    """Every scored system (few-shot prompting, SELF-GUIDE, Self-ICL, few-shot fine-tuning when run)."""
    seconds: float
    """Wall time of the task's stages."""
    annotator: dict[str, Any] | None = None
    """Classification: the annotator's accuracy on validation inputs and the majority share (percent)."""
    runs: list[dict[str, Any]] = field(default_factory=list)
    """One entry per seed: its `seed` offset, `baseline`, `finetuned`, `kept`, the per-item scores of both
    systems (`baselineItems`, `finetunedItems`, the same items in every run) and what `collapse`d, if anything
    (`Findings.collapse`)."""

    @property
    def differences(self) -> list[list[float]]:
        """Per seed, the per-item differences (fine-tuned minus prompting)."""
        return [[f - b for b, f in zip(r["baselineItems"], r["finetunedItems"], strict=True)] for r in self.runs]

    @cached_property
    def interval(self) -> tuple[float, float]:
        """The paired `CONFIDENCE` interval of the delta, over items and seeds."""
        return average_interval([self.differences], CONFIDENCE)

    @property
    def p_value(self) -> float | None:
        """Exact match: McNemar's test on the items, pooled over seeds; None for other metrics."""
        if self.metric != "exact_match" or not self.runs:
            return None
        return mcnemar([r["baselineItems"] for r in self.runs], [r["finetunedItems"] for r in self.runs])

    @property
    def collapsed(self) -> int:
        """Runs whose training set or tuned classifier collapsed to one label."""
        return sum(bool(r.get("collapse")) for r in self.runs)

    @property
    def verdict(self) -> str:
        """`collapse` when a run's training set or tuned classifier collapsed, whatever the scores (with how many
        runs did when not all); otherwise what the interval says."""
        if self.collapsed:
            return "collapse" if self.collapsed == len(self.runs) else f"collapse ({self.collapsed} of {len(self.runs)})"
        return verdict(*self.interval)

    @property
    def annotator_finding(self) -> AnnotatorAtMajority | None:
        """The annotator is no better than the majority class on the validation inputs it was measured on."""
        return None if self.annotator is None else AnnotatorAccuracy.model_validate(self.annotator).finding()

    @property
    def delta(self) -> float:
        return self.finetuned - self.baseline

    def to_row(self) -> dict[str, Any]:
        """The task's line of `bench.jsonl`: its fields, the delta, its interval and the verdict."""
        low, high = self.interval
        return {**asdict(self), "delta": round(self.delta, 2), "interval": [round(low, 2), round(high, 2)],
                "verdict": self.verdict, "pValue": self.p_value}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TaskScore:
        """The score a `bench.jsonl` line holds (derived values such as the delta are recomputed)."""
        return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in row})


def read_bench(workdir: Path) -> dict[str, TaskScore]:
    """Task -> score, from the `bench.jsonl` of a bench workdir (empty when it has none)."""
    rows = workdir / "bench.jsonl"
    return {row["task"]: TaskScore.from_row(row) for row in (read_jsonl(rows) if rows.is_file() else [])}


def run_task(task: BenchTask, workdir: Path, overrides: dict[str, Any], split: str = "test",
             max_eval: int | None = None, annotator_items: int = 0, inputs_from: Path | None = None) -> TaskScore:
    """Run (or resume) every stage of one task (`selfguide.pipeline.run_pipeline`; nothing is published) and
    return its scores; with `inputs_from`, from the inputs another run of the task generated."""
    workdir.mkdir(parents=True, exist_ok=True)
    eval_path = write_eval_split(task, split, workdir / f"{split}.jsonl")
    job = build_job(task, eval_path, overrides, max_eval)
    seconds = run_pipeline(job.spec, workdir, inputs_from=inputs_from).seconds
    report = EvaluationReport.read(workdir / REPORT)
    kept = FilterReport.read(workdir / FILTER_REPORT).final
    annotator = None
    if annotator_items and task.task_type is TaskType.CLASSIFICATION and task.data.get("validation"):
        items = [EvalExample(input=r["input"], output=r["output"]) for r in task.data["validation"][:annotator_items]]
        annotator = annotator_accuracy(job.spec, items, workdir)
    run = {"baseline": report.baseline, "finetuned": report.finetuned, "kept": kept,
           "baselineItems": report.item_scores("fewShotPrompting"), "finetunedItems": report.item_scores("selfGuide"),
           "collapse": report.findings.collapse if report.findings else None}
    return TaskScore(task.name, task.task_type.value, report.metric.value, report.baseline, report.finetuned,
                     report.examples, kept, report.scores, round(seconds, 1), annotator, [run])


def seeded(overrides: dict[str, Any], task_type: TaskType, offset: int) -> dict[str, Any]:
    """The configuration for a task of `task_type` with its generation and training seeds moved by `offset`."""
    resolved = overrides_for(task_type, overrides)
    seeds = {section: {"seed": (resolved.get(section) or {}).get("seed", 0) + offset}
             for section in ("generation", "training")}
    return deep_merge(resolved, seeds)


def run_seeds(task: BenchTask, workdir: Path, overrides: dict[str, Any], seeds: int = 1, split: str = "test",
              max_eval: int | None = None, annotator_items: int = 0,
              inputs_from: Path | None = None) -> TaskScore:
    """`run_task` once per seed (generation and training seeds moved together; `workdir/seed-<k>` when there are
    several), combined: mean scores, and every run kept for the intervals."""
    if seeds == 1:
        return run_task(task, workdir, overrides, split, max_eval, annotator_items, inputs_from)
    runs = []
    for k in range(seeds):
        run_dir, config = seed_run(task.task_type, workdir, overrides, k, seeds)
        runs.append(run_task(task, run_dir, config, split, max_eval, annotator_items if k == 0 else 0,
                             inputs_from / run_dir.name if inputs_from else None))
    return combine_seeds(runs)


def seed_run(task_type: TaskType, workdir: Path, overrides: dict[str, Any], offset: int,
             seeds: int) -> tuple[Path, dict[str, Any]]:
    """Where seed `offset` of `seeds` runs, and its configuration for a task of `task_type`: `workdir` and the
    configuration as given when there is one seed, else `workdir/seed-<offset>` with the seeds moved (`seeded`)."""
    if seeds == 1:
        return workdir, overrides_for(task_type, overrides)
    return workdir / f"seed-{offset}", seeded(overrides, task_type, offset)


def combine_seeds(runs: Sequence[TaskScore]) -> TaskScore:
    """One task's runs, one per seed offset (in order), as one score: mean scores, every run kept for the
    intervals, the first run's annotator measurement."""
    first = runs[0]
    return TaskScore(
        first.task, first.task_type, first.metric, mean([r.baseline for r in runs]),
        mean([r.finetuned for r in runs]), first.examples, round(mean([float(r.kept) for r in runs])),
        {name: mean([r.scores[name] for r in runs]) for name in first.scores}, round(sum(r.seconds for r in runs), 1),
        first.annotator, [run.runs[0] | {"seed": k} for k, run in enumerate(runs)])


BASELINES = {"selfIcl": "Self-ICL", "fewShotFinetuning": "few-shot fine-tuning"}


def ceiling_cell(score: TaskScore) -> str:
    """The annotator's accuracy against the majority share, as a table cell (marked where it cannot help)."""
    if score.annotator is None:
        return "-"
    cell = f"{score.annotator['accuracy']:.1f} / {score.annotator['majorityShare']:.1f}"
    return cell + " (cannot help)" if score.annotator_finding else cell


def delta_cell(delta: float, interval: tuple[float, float]) -> str:
    return f"{delta:+.1f} [{interval[0]:+.1f}, {interval[1]:+.1f}]"


def table(scores: Sequence[TaskScore]) -> str:
    """The paper-style table: per task, then the average per task type; baselines and the annotator's ceiling
    appear when they were measured."""
    extra = [key for key in BASELINES if any(key in s.scores for s in scores)]
    lines = ["| task | metric | few-shot prompting | " + "".join(f"{BASELINES[k]} | " for k in extra)
             + f"SELF-GUIDE | delta [{CONFIDENCE:.0%} interval] | verdict | McNemar p | seeds | generated examples | "
               "annotator accuracy / majority | stage time |",
             "| --- | --- | ---: | " + "---: | " * len(extra) + "---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]

    def cells(values: dict[str, float]) -> str:
        return "".join(f"{values[k]:.1f} | " if k in values else "- | " for k in extra)

    for s in scores:
        p = "-" if s.p_value is None else f"{s.p_value:.3f}"
        lines.append(f"| {s.task} | {s.metric} | {s.baseline:.1f} | {cells(s.scores)}{s.finetuned:.1f} | "
                     f"{delta_cell(s.delta, s.interval)} | {s.verdict} | {p} | {max(1, len(s.runs))} | "
                     f"{s.kept} | {ceiling_cell(s)} | {s.seconds / 60:.0f} min |")
    for task_type in ("classification", "generation"):
        group = [s for s in scores if s.task_type == task_type]
        if group:
            base, tuned = mean([s.baseline for s in group]), mean([s.finetuned for s in group])
            averages = {k: mean([s.scores[k] for s in group if k in s.scores]) for k in extra
                        if all(k in s.scores for s in group)}
            interval = average_interval([s.differences for s in group], CONFIDENCE)
            lines.append(f"| **average {task_type}** ({len(group)}) | {group[0].metric} | {base:.1f} | "
                         f"{cells(averages)}{tuned:.1f} | {delta_cell(tuned - base, interval)} | "
                         f"{verdict(*interval)} | | | | | |")
    return "\n".join(lines)


def run_bench(task_files: Sequence[Path], workdir: Path, overrides: dict[str, Any],
              max_eval: int | None = None, annotator_items: int = ANNOTATOR_ITEMS,
              inputs_from: Path | None = None, seeds: int = 1) -> list[TaskScore]:
    """Run the tasks and return the scores of every task benched in `workdir`, the newest run of each (also in
    `bench.jsonl` and `bench.md`), so tasks benched one invocation at a time add up to one table. With
    `inputs_from` (another bench's workdir), each task starts from the inputs that bench generated for it."""
    tasks = [BenchTask.load(path) for path in task_files]
    scores = [run_seeds(task, workdir / task.name, overrides, seeds, "test", max_eval, annotator_items,
                        inputs_from / task.name if inputs_from else None) for task in tasks]
    merged = read_bench(workdir)
    merged.update((s.task, s) for s in scores)
    atomic_write_text(workdir / "bench.md", table(list(merged.values())) + "\n")
    atomic_write_jsonl(workdir / "bench.jsonl", (s.to_row() for s in merged.values()))
    return list(merged.values())
