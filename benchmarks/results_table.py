"""The table of docs/results.md: `selfguide bench` runs of two configurations over the same tasks, side by side.

    .venv/bin/python -m benchmarks.results_table --paper runs/pb-paper --chosen runs/pb-cal [runs/more ...]

Reads each run's `bench.jsonl` (one line per task benched in that workdir, written by `selfguide bench`) and
prints one row per task: few-shot prompting, Self-ICL and few-shot fine-tuning (from the chosen configuration's
run, else the paper's: Self-ICL's prompt holds that run's generated examples), SELF-GUIDE with the paper's
configuration and with the chosen one, their training examples, the annotator's accuracy on validation inputs
under each configuration's annotation method against the majority share, and wall time. A task missing from a
run shows `-`. Averages per task type cover the tasks every column has. Below the table,
the paper's selection rule (worst-task improvement) over the tasks both configurations ran. A generation task
runs the same under both when the chosen configuration changes classification only: pass its workdir to both.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from selfguide.contract.intervals import worst_task_intervals
from selfguide.experiments.bench import CONFIDENCE, TaskScore, read_bench
from selfguide.experiments.sweep import paper_rule
from selfguide.stages.evaluate.scoring import mean


def load(*workdirs: Path) -> dict[str, TaskScore]:
    """Task -> score, over the runs' `bench.jsonl` (a later run's row of a task wins)."""
    return {task: score for workdir in workdirs for task, score in read_bench(workdir).items()}


COLUMNS = ("few-shot prompting", "Self-ICL", "few-shot fine-tuning", "SELF-GUIDE, paper", "delta",
           "SELF-GUIDE, chosen", "delta")


def values(paper: TaskScore | None, chosen: TaskScore | None) -> list[float | None]:
    """The scored columns of one task (None where not measured)."""
    reference = chosen or paper
    scores = reference.scores if reference else {}

    def tuned(score: TaskScore | None) -> list[float | None]:
        return [score.finetuned, score.delta] if score else [None, None]

    return [reference.baseline if reference else None, scores.get("selfIcl"), scores.get("fewShotFinetuning"),
            *tuned(paper), *tuned(chosen)]


def cell(value: float | None, signed: bool) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def annotator_cell(paper: TaskScore | None, chosen: TaskScore | None) -> str:
    """The annotator's accuracy on validation inputs under each configuration's annotation method, and the
    majority share."""
    measured = [score.annotator for score in (paper, chosen) if score and score.annotator]
    if not measured:
        return "-"
    accuracy = [f"{score.annotator['accuracy']:.1f}" if score and score.annotator else "-" for score in (paper, chosen)]
    return f"{accuracy[0]} / {accuracy[1]} / {measured[0]['majorityShare']:.1f}"


def table(paper: dict[str, TaskScore], chosen: dict[str, TaskScore]) -> str:
    tasks = sorted(set(paper) | set(chosen))
    lines = ["| task | metric | " + " | ".join(COLUMNS) + " | examples (paper / chosen) | annotator (paper / chosen) / "
             "majority | time (paper / chosen) |", "| --- | --- |" + " ---: |" * (len(COLUMNS) + 3)]
    signed = [name == "delta" for name in COLUMNS]
    for task in tasks:
        p, c = paper.get(task), chosen.get(task)
        metric = (c or paper[task]).metric
        examples = " / ".join(str(s.kept) if s else "-" for s in (p, c))
        minutes = " / ".join(f"{s.seconds / 60:.0f} min" if s else "-" for s in (p, c))
        cells = " | ".join(cell(v, s) for v, s in zip(values(p, c), signed))
        lines.append(f"| {task} | {metric} | {cells} | {examples} | {annotator_cell(p, c)} | {minutes} |")
    for task_type in ("classification", "generation"):
        rows = [values(paper.get(t), chosen.get(t)) for t in tasks if (chosen.get(t) or paper[t]).task_type == task_type]
        if rows:
            columns = [[v for r in rows if (v := r[i]) is not None] for i in range(len(COLUMNS))]
            averages = [mean(column) if len(column) == len(rows) else None for column in columns]
            cells = " | ".join(cell(v, s) for v, s in zip(averages, signed))
            lines.append(f"| **average {task_type}** ({len(rows)}) | | {cells} | | | |")
    return "\n".join(lines)


def verdict(paper: dict[str, TaskScore], chosen: dict[str, TaskScore]) -> str:
    """The paper's "One Parameter Fits All" rule (`selfguide sweep`'s) over the tasks both configurations ran, with
    the paired interval of the winner's lead where the rows keep per-item scores of the same items and seeds."""
    tasks = sorted(set(paper) & set(chosen))
    if not tasks:
        return "No task ran with both configurations."
    runs = {"paper": [paper[t] for t in tasks], "chosen": [chosen[t] for t in tasks]}
    ranks = {name: paper_rule(scores) for name, scores in runs.items()}
    winner = max(ranks, key=ranks.__getitem__)
    parts = [f"{name} {worst:+.1f} ({min(runs[name], key=lambda s: s.delta).task}), mean {average:+.1f}"
             for name, (worst, average) in ranks.items()]
    names = list(runs)
    try:
        lead = worst_task_intervals([[s.differences for s in runs[name]] for name in names], names.index(winner),
                                    CONFIDENCE)[1 - names.index(winner)]
    except ValueError as error:
        evidence = f"no interval ({error})"
    else:
        evidence = (f"its lead's {CONFIDENCE:.0%} interval [{lead[0]:+.1f}, {lead[1]:+.1f}]: "
                    + ("better" if lead[0] > 0 else "no difference"))
    return (f"Worst-task improvement over the {len(tasks)} tasks both ran: {'; '.join(parts)}. "
            f"By the paper's rule: {winner}; {evidence}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", type=Path, nargs="+", required=True,
                        help="bench workdirs of the paper's configuration")
    parser.add_argument("--chosen", type=Path, nargs="+", required=True,
                        help="bench workdirs of the chosen configuration")
    args = parser.parse_args()
    paper, chosen = load(*args.paper), load(*args.chosen)
    print(table(paper, chosen))
    print()
    print(verdict(paper, chosen))


if __name__ == "__main__":
    main()
