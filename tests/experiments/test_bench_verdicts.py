"""The bench table names a collapse and an annotator that cannot help, whatever the scores (no model needed)."""

from __future__ import annotations

from selfguide.experiments.bench import TaskScore, table

COLLAPSE = "collapsed classifier: SELF-GUIDE answers '2' to 200 of 200 evaluation items, 130 of the 130 ..."


def score(collapses: list[str | None], accuracy: float = 45.0) -> TaskScore:
    """A task whose runs "beat" prompting on every item of 20 (the interval alone would say `better`)."""
    runs = [{"seed": k, "baseline": 0.0, "finetuned": 100.0, "kept": 81, "baselineItems": [0.0] * 20,
             "finetunedItems": [100.0] * 20, "collapse": collapse} for k, collapse in enumerate(collapses)]
    return TaskScore("task1", "classification", "exact_match", 0.0, 100.0, 20, 81,
                     {"fewShotPrompting": 0.0, "selfGuide": 100.0}, 60.0,
                     {"items": 60, "method": "vote", "calibration": "none", "accuracy": accuracy,
                      "coverage": 95.0, "majorityShare": 61.7}, runs)


def test_a_collapse_is_the_verdict_whatever_the_interval():
    assert score([None]).verdict == "better"
    assert score([COLLAPSE]).verdict == "collapse"
    assert score([COLLAPSE, None, None]).verdict == "collapse (1 of 3)"
    row = score([COLLAPSE]).to_row()
    assert row["verdict"] == "collapse" and row["runs"][0]["collapse"] == COLLAPSE
    assert TaskScore.from_row(row).verdict == "collapse"


def test_rows_written_before_collapses_were_recorded_read_as_none():
    row = score([None]).to_row()
    for run in row["runs"]:
        del run["collapse"]
    assert TaskScore.from_row(row).verdict == "better"


def test_the_table_names_the_collapse_and_an_annotator_at_or_below_the_majority_class():
    lines = table([score([COLLAPSE]), score([None], accuracy=70.0)]).splitlines()
    collapsed, fine = [line for line in lines if line.startswith("| task1 |")]
    assert "| collapse |" in collapsed and "| 45.0 / 61.7 (cannot help) |" in collapsed
    assert "| better |" in fine and "| 70.0 / 61.7 |" in fine
