"""The rules that name a collapse (a one-label training set, a one-answer classifier) and an annotator that cannot
help, and the quality gate that fails on a collapse whatever the scores."""

from __future__ import annotations

import pytest

from selfguide.contract.findings import (
    annotator_at_majority,
    findings,
    label_counts,
    one_answer_model,
    one_label_training_set,
)
from selfguide.contract.results import EvaluateResult, Metric, judge


def test_label_counts_are_most_common_first_and_skip_answers_without_a_label():
    assert list(label_counts(["a", None, "b", "b", None]).items()) == [("b", 2), ("a", 1)]


@pytest.mark.parametrize(("labels", "named"), [
    (["2"] * 81, ("2", 81, 81)),  # the hidden task: 81 examples, all `2`
    (["a"] * 9 + ["b"], ("a", 9, 10)),  # 90%: at the threshold
    (["a"] * 8 + ["b"] * 2, None),
    (["a"] * 93 + ["b"] * 93, None),  # balanced
    (["a"], ("a", 1, 1)),
    ([], None),
])
def test_a_training_set_of_one_label(labels, named):
    found = one_label_training_set(labels)
    assert (found and (found.label, found.count, found.total)) == named
    if found:
        assert f"{found.count} of {found.total} training examples are labelled '{found.label}'" in found.message()


def test_a_classifier_that_answers_one_label_to_every_input_is_a_collapse():
    gold = ["0"] * 70 + ["1"] * 60 + ["2"] * 70
    found = one_answer_model(["2"] * 200, gold)
    assert found is not None
    assert (found.label, found.count, found.total, found.other_answered, found.other_gold) == ("2", 200, 200, 130, 130)
    assert "answers '2' to 200 of 200 evaluation items, 130 of the 130 whose gold label is another" in found.message()


def test_balanced_gold_answered_with_one_label_nine_times_in_ten_is_a_collapse():
    gold = ["Toxic", "Non-toxic"] * 50
    answers = ["Non-toxic"] * 90 + ["Toxic"] * 10
    assert one_answer_model(answers, gold) is not None


@pytest.mark.parametrize("answers", [
    ["a"] * 170 + ["b"] * 30,  # 85%: below the threshold
    ["a"] * 180 + [None] * 20,  # 90% one label, but the other gold items are not answered `a` often enough
])
def test_below_the_thresholds_is_no_collapse(answers):
    gold = ["a"] * 100 + ["b"] * 100
    assert one_answer_model(answers, gold) is None


def test_a_skewed_gold_set_answered_right_is_no_collapse():
    """95% of the gold labels are `a`: answering `a` to 95% of the items is right when the others get `b`."""
    gold = ["a"] * 190 + ["b"] * 10
    assert one_answer_model(list(gold), gold) is None
    assert one_answer_model(["a"] * 200, gold) is not None  # but `a` whatever the input is a collapse


def test_too_few_items_with_another_gold_label_show_nothing():
    assert one_answer_model(["a"] * 6, ["a", "b"] * 3) is None  # 3 items with another gold label
    assert one_answer_model(["a"] * 10, ["a", "b"] * 5) is not None  # 5 of them


def test_answers_without_a_label_are_not_one_answer():
    assert one_answer_model([None] * 20, ["a", "b"] * 10) is None


@pytest.mark.parametrize(("accuracy", "majority", "fires"), [(45.0, 61.7, True), (53.3, 53.3, True),
                                                              (55.0, 53.3, False)])
def test_an_annotator_at_or_below_the_majority_class_cannot_help(accuracy, majority, fires):
    found = annotator_at_majority(accuracy, majority, 60)
    assert (found is not None) == fires
    if found:
        assert found.message() == (f"self-training cannot help: the annotator labels {accuracy:.1f}% of 60 gold "
                                   f"inputs right, at or below the majority class ({majority:.1f}%)")


def test_findings_name_a_collapse_and_keep_the_annotator_apart():
    gold = ["a", "b"] * 10
    collapsed = findings(["b"] * 12, ["b"] * 20, gold, annotator_at_majority(40.0, 50.0, 60))
    assert collapsed is not None and collapsed.collapse is not None
    assert "one-label training set" in collapsed.collapse and "collapsed classifier" in collapsed.collapse
    assert len(collapsed.messages()) == 3
    only_annotator = findings(["a", "b"] * 6, gold, gold, annotator_at_majority(40.0, 50.0, 60))
    assert only_annotator is not None and only_annotator.collapse is None
    assert findings(["a", "b"] * 6, gold, gold) is None


def test_the_gate_fails_on_a_collapse_whatever_the_score():
    """The hidden task: the collapsed model "beats" prompting, whose invalid labels scored 0."""
    baseline = [100.0] * 60 + [0.0] * 140
    finetuned = [100.0] * 80 + [0.0] * 120
    collapse = one_answer_model(["2"] * 200, ["2"] * 80 + ["0"] * 120)
    assert collapse is not None
    clean = judge(0.0, baseline, finetuned)
    assert clean.passed and clean.collapse is None
    gate = judge(0.0, baseline, finetuned, collapse=collapse.message())
    assert not gate.passed and gate.lower > 0
    assert gate.message().startswith("quality gate failed whatever the score (collapsed classifier: SELF-GUIDE "
                                     "answers '2' to 200 of 200")
    assert "lower end >= required +0.00" in gate.message()


def test_the_stage_result_line_names_what_was_found():
    found = findings(["b"] * 12, ["b"] * 20, ["a", "b"] * 10)
    result = EvaluateResult(metric=Metric.EXACT_MATCH, examples=20, baseline=40.0, finetuned=50.0, delta=10.0,
                            findings=found)
    assert result.line().endswith("(+10.0); one-label training set: 12 of 12 training examples are labelled 'b'; "
                                  "collapsed classifier: SELF-GUIDE answers 'b' to 20 of 20 evaluation items, 10 of "
                                  "the 10 whose gold label is another")
    assert EvaluateResult.model_validate_json(result.model_dump_json(by_alias=True)) == result
