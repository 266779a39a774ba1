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
import json
from pathlib import Path
from typing import Any

from selfguide.stages.evaluate.scoring import mean


def load(*workdirs: Path) -> dict[str, dict[str, Any]]:
    """Task -> bench row, over the runs' `bench.jsonl` (a later run's row of a task wins)."""
    paths = [workdir / "bench.jsonl" for workdir in workdirs]
    return {row["task"]: row for path in paths if path.is_file()
            for row in map(json.loads, path.read_text().splitlines()) if row}


COLUMNS = ("few-shot prompting", "Self-ICL", "few-shot fine-tuning", "SELF-GUIDE, paper", "delta",
           "SELF-GUIDE, chosen", "delta")


def values(paper: dict[str, Any] | None, chosen: dict[str, Any] | None) -> list[float | None]:
    """The scored columns of one task (None where not measured)."""
    base = (chosen or paper or {}).get("baseline")
    scores = (chosen or paper or {}).get("scores", {})

    def tuned(row: dict[str, Any] | None) -> list[float | None]:
        return [row["finetuned"], row["finetuned"] - row["baseline"]] if row else [None, None]

    return [base, scores.get("selfIcl"), scores.get("fewShotFinetuning"), *tuned(paper), *tuned(chosen)]


def cell(value: float | None, signed: bool) -> str:
    if value is None:
        return "-"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def annotator_cell(paper: dict[str, Any] | None, chosen: dict[str, Any] | None) -> str:
    """The annotator's accuracy on validation inputs under each configuration's annotation method, and the
    majority share."""
    measured = [row["annotator"] for row in (paper, chosen) if row and row.get("annotator")]
    if not measured:
        return "-"
    accuracy = [f"{row['annotator']['accuracy']:.1f}" if row and row.get("annotator") else "-" for row in (paper, chosen)]
    return f"{accuracy[0]} / {accuracy[1]} / {measured[0]['majorityShare']:.1f}"


def table(paper: dict[str, dict[str, Any]], chosen: dict[str, dict[str, Any]]) -> str:
    tasks = sorted(set(paper) | set(chosen))
    lines = ["| task | metric | " + " | ".join(COLUMNS) + " | examples (paper / chosen) | annotator (paper / chosen) / "
             "majority | time (paper / chosen) |", "| --- | --- |" + " ---: |" * (len(COLUMNS) + 3)]
    signed = [name == "delta" for name in COLUMNS]
    for task in tasks:
        p, c = paper.get(task), chosen.get(task)
        row = c or paper[task]
        examples = " / ".join(str(r["kept"]) if r else "-" for r in (p, c))
        minutes = " / ".join(f"{r['seconds'] / 60:.0f} min" if r else "-" for r in (p, c))
        cells = " | ".join(cell(v, s) for v, s in zip(values(p, c), signed))
        lines.append(f"| {task} | {row['metric']} | {cells} | {examples} | {annotator_cell(p, c)} | {minutes} |")
    for task_type in ("classification", "generation"):
        rows = [values(paper.get(t), chosen.get(t)) for t in tasks if (chosen.get(t) or paper[t])["task_type"] == task_type]
        if rows:
            columns = [[v for r in rows if (v := r[i]) is not None] for i in range(len(COLUMNS))]
            averages = [mean(column) if len(column) == len(rows) else None for column in columns]
            cells = " | ".join(cell(v, s) for v, s in zip(averages, signed))
            lines.append(f"| **average {task_type}** ({len(rows)}) | | {cells} | | | |")
    return "\n".join(lines)


def verdict(paper: dict[str, dict[str, Any]], chosen: dict[str, dict[str, Any]]) -> str:
    """The paper's "One Parameter Fits All" rule over the tasks both configurations ran: the configuration whose
    worst task improves most over few-shot prompting wins (the mean breaks a tie)."""
    tasks = sorted(set(paper) & set(chosen))
    if not tasks:
        return "No task ran with both configurations."

    def rank(rows: dict[str, dict[str, Any]]) -> tuple[float, float, str]:
        deltas = {t: rows[t]["finetuned"] - rows[t]["baseline"] for t in tasks}
        worst = min(deltas, key=deltas.__getitem__)
        return deltas[worst], mean(list(deltas.values())), worst

    ranks = {"paper": rank(paper), "chosen": rank(chosen)}
    winner = max(ranks, key=lambda name: ranks[name][:2])
    parts = [f"{name} {worst:+.1f} ({task}), mean {average:+.1f}" for name, (worst, average, task) in ranks.items()]
    return (f"Worst-task improvement over the {len(tasks)} tasks both ran: {'; '.join(parts)}. "
            f"By the paper's rule: {winner}.")


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
