"""benchmarks/results_table.py: two `selfguide bench` runs side by side, a task missing from one shown as `-`."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.results_table import load, table, verdict


def row(task: str, task_type: str, baseline: float, finetuned: float, kept: int, **scores: float) -> dict:
    return {"task": task, "task_type": task_type, "metric": "exact_match" if task_type == "classification" else
            "rouge_l", "baseline": baseline, "finetuned": finetuned, "examples": kept, "kept": kept, "seconds": 600.0,
            "scores": {"fewShotPrompting": baseline, "selfGuide": finetuned, **scores},
            "annotator": {"accuracy": 58.3, "majorityShare": 28.3} if task_type == "classification" else None}


def write(workdir: Path, rows: list[dict]) -> Path:
    workdir.mkdir()
    (workdir / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return workdir


def test_rows_and_averages(tmp_path):
    paper = write(tmp_path / "paper", [row("a", "classification", 40.0, 44.0, 9, selfIcl=20.0),
                                       row("b", "classification", 50.0, 40.0, 2, fewShotFinetuning=33.0)])
    chosen = write(tmp_path / "chosen", [row("a", "classification", 40.0, 50.0, 24, selfIcl=30.0, fewShotFinetuning=35.0),
                                         row("g", "generation", 60.0, 66.0, 10)])
    lines = table(load(paper), load(chosen)).splitlines()
    # baselines from the chosen configuration's run where there is one (a), else the paper's (b)
    assert lines[2] == ("| a | exact_match | 40.0 | 30.0 | 35.0 | 44.0 | +4.0 | 50.0 | +10.0 | 9 / 24 | 58.3 / 58.3 / 28.3 | "
                        "10 min / 10 min |")
    assert lines[3] == "| b | exact_match | 50.0 | - | 33.0 | 40.0 | -10.0 | - | - | 2 / - | 58.3 / - / 28.3 | 10 min / - |"
    assert lines[4].startswith("| g | rouge_l | 60.0 | - | - | - | - | 66.0 | +6.0 | - / 10 | - |")
    # a column averages only where every task of the type has it
    assert lines[5] == "| **average classification** (2) | | 45.0 | - | 34.0 | 42.0 | -3.0 | - | - | | | |"
    assert lines[6] == "| **average generation** (1) | | 60.0 | - | - | - | - | 66.0 | +6.0 | | | |"


def test_runs_merge_and_a_missing_run_is_empty(tmp_path):
    first = write(tmp_path / "first", [row("a", "classification", 40.0, 44.0, 9), row("b", "classification", 50.0, 40.0, 2)])
    second = write(tmp_path / "second", [row("a", "classification", 40.0, 50.0, 24)])
    merged = load(first, tmp_path / "nowhere", second)
    assert sorted(merged) == ["a", "b"] and merged["a"].finetuned == 50.0
    assert load(tmp_path / "nowhere") == {}


def test_verdict_applies_the_worst_task_rule_to_tasks_both_ran(tmp_path):
    # chosen has the better mean (+5.0 vs -1.5) but the worse worst task (-10.0 vs -3.0); task c is paper-only
    paper = load(write(tmp_path / "paper", [row("a", "classification", 40.0, 40.0, 9),
                                            row("b", "classification", 50.0, 47.0, 2),
                                            row("c", "classification", 50.0, 0.0, 2)]))
    chosen = load(write(tmp_path / "chosen", [row("a", "classification", 40.0, 60.0, 9),
                                              row("b", "classification", 50.0, 40.0, 2)]))
    assert verdict(paper, chosen) == ("Worst-task improvement over the 2 tasks both ran: paper -3.0 (b), mean -1.5; "
                                      "chosen -10.0 (b), mean +5.0. By the paper's rule: paper; no interval (a task "
                                      "has no per-item scores).")
    assert verdict(paper, {}) == "No task ran with both configurations."


def with_items(task_row: dict, differences: list[float]) -> dict:
    """The row with one seed's per-item scores whose differences (fine-tuned minus prompting) are given."""
    return task_row | {"runs": [{"seed": 0, "baselineItems": [50.0] * len(differences),
                                 "finetunedItems": [50.0 + d for d in differences]}]}


def test_verdict_gives_the_interval_of_the_winners_lead_where_rows_keep_item_scores(tmp_path):
    noise = [-20.0, 0.0, 0.0, 20.0] * 15
    shifted = noise[1:] + noise[:1]
    clear = {"paper": [with_items(row("a", "classification", 50.0, 60.0, 9), [10 + x for x in noise])],
             "chosen": [with_items(row("a", "classification", 50.0, 20.0, 9), [-30 + x for x in shifted])]}
    close = {"paper": clear["paper"],
             "chosen": [with_items(row("a", "classification", 50.0, 59.0, 9), [9 + x for x in shifted])]}
    for name, runs, expected in (("clear", clear, "better"), ("close", close, "no difference")):
        paper, chosen = (load(write(tmp_path / f"{name}-{side}", runs[side])) for side in ("paper", "chosen"))
        text = verdict(paper, chosen)
        assert "By the paper's rule: paper; its lead's 95% interval [" in text and text.endswith(f"]: {expected}.")
