"""Scores as SNI / SELF-GUIDE define them, against hand-computed values (no model needed)."""

from __future__ import annotations

import pytest

from selfguide.stages.evaluate.scoring import exact_match, extract_label, mean, rouge_l

# -- label extraction ----------------------------------------------------------------------------------


def test_extract_label_takes_the_last_occurrence():
    labels = ["positive", "negative"]
    assert extract_label("positive at first, but in the end negative", labels) == "negative"
    assert extract_label("negative? no: positive", labels) == "positive"
    assert extract_label("negative negative positive negative", labels) == "negative"


def test_extract_label_prefers_the_longest_label_at_the_same_position():
    # "1" is a prefix of "10": at the position of "10" the longer label must win
    assert extract_label("the answer is 10", ["1", "10"]) == "10"
    assert extract_label("the answer is 10", ["10", "1"]) == "10"
    assert extract_label("Entailment", ["E", "Entailment"]) == "Entailment"
    # ... but a later shorter match still beats an earlier longer one
    assert extract_label("Entailment, so E", ["E", "Entailment"]) == "E"


def test_extract_label_without_a_match_or_labels():
    assert extract_label("no idea", ["positive", "negative"]) is None
    assert extract_label("positive", []) is None
    assert extract_label("", ["positive"]) is None


def test_extract_label_escapes_regex_characters():
    # a label with regex metacharacters is matched literally
    assert extract_label("I pick (a) then (b).", ["(a)", "(b)", "."]) == "."
    assert extract_label("I pick (a) then (b)", ["(a)", "(b)"]) == "(b)"
    assert extract_label("I pick a then b", ["(a)", "(b)", "a+"]) is None


# -- exact match ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "gold", "labels", "expected"),
    [
        ("positive", "positive", ["positive", "negative"], 100.0),
        ("The review is positive.", "positive", ["positive", "negative"], 100.0),
        ("The review is positive.", "negative", ["positive", "negative"], 0.0),
        # the last label counts, not the first
        ("negative... actually positive", "positive", ["positive", "negative"], 100.0),
        ("positive... actually negative", "positive", ["positive", "negative"], 0.0),
        # no label in the answer: never a match, even when the answer equals the gold text loosely
        ("I cannot tell", "positive", ["positive", "negative"], 0.0),
        # SNI normalisation of both sides: case, punctuation, whitespace
        ("answer: Yes", "yes.", ["Yes", "No"], 100.0),
        ("it is not entailment", "Not  Entailment!", ["not entailment", "entailment"], 100.0),
        ("it is not_entailment", "notentailment", ["not_entailment", "entailment"], 100.0),
        # longest label at the same position decides
        ("label 10", "10", ["1", "10"], 100.0),
        ("label 10", "1", ["1", "10"], 0.0),
    ],
)
def test_exact_match(answer, gold, labels, expected):
    assert exact_match(answer, gold, labels) == expected


def test_exact_match_does_not_remove_articles():
    # SNI's normalize_answer lower-cases, strips punctuation and collapses spaces, but keeps articles
    # (unlike SQuAD's); "a cat" and "cat" are different answers
    assert exact_match("so: a cat", "cat", ["a cat", "cat"]) == 0.0
    assert exact_match("so: a cat", "A cat.", ["a cat", "cat"]) == 100.0


# -- ROUGE-L -------------------------------------------------------------------------------------------


def test_rouge_l_prefix_of_the_reference():
    # prediction tokens [the, cat, sat], reference [the, cat, sat, on, the, mat]:
    # LCS 3, P = 3/3, R = 3/6, F = 2PR/(P+R) = 2/3
    assert rouge_l("the cat sat", ["the cat sat on the mat"]) == pytest.approx(66.6667, abs=1e-3)


def test_rouge_l_is_order_sensitive():
    # [sat, cat, the] vs [the, cat, sat]: LCS 1, P = R = 1/3
    assert rouge_l("sat cat the", ["the cat sat"]) == pytest.approx(33.3333, abs=1e-3)


def test_rouge_l_gaps_in_the_subsequence():
    # prediction [a, x, c, y, d], reference [a, b, c, d]: LCS [a, c, d] = 3, P = 3/5, R = 3/4,
    # F = 2 * 0.6 * 0.75 / 1.35 = 0.6667
    assert rouge_l("a x c y d", ["a b c d"]) == pytest.approx(66.6667, abs=1e-3)


def test_rouge_l_stems_and_ignores_case_and_punctuation():
    assert rouge_l("running", ["run"]) == pytest.approx(100.0)
    assert rouge_l("The CAT, sat!", ["the cat sat"]) == pytest.approx(100.0)
    # Porter: cities -> citi = city, running -> run; reference [the, citi, were, run], prediction [citi, run]:
    # LCS 2, P = 1, R = 1/2, F = 2/3
    assert rouge_l("city run", ["The cities were running."]) == pytest.approx(66.6667, abs=1e-3)


def test_rouge_l_disjoint_and_empty_answers_score_zero():
    assert rouge_l("xyz", ["abc def"]) == 0.0
    assert rouge_l("", ["abc def"]) == 0.0


def test_rouge_l_takes_the_best_reference():
    assert rouge_l("the cat sat", ["a dog ran", "the cat sat"]) == pytest.approx(100.0)
    assert rouge_l("the cat sat", ["sat cat the", "the cat sat on the mat", "dog"]) == pytest.approx(66.6667, abs=1e-3)
    # order of the references does not matter
    assert rouge_l("the cat sat", ["the cat sat on the mat", "sat cat the"]) == pytest.approx(66.6667, abs=1e-3)


# -- mean ----------------------------------------------------------------------------------------------


def test_mean():
    assert mean([]) == 0.0
    assert mean([100.0]) == 100.0
    assert mean([100.0, 0.0, 50.0]) == pytest.approx(50.0)
    assert mean([1.0, 2.0]) == 1.5


def test_labels_match_whole_words_ignoring_case():
    assert extract_label("Yes, it is not", ["yes", "no"]) == "yes"
    assert exact_match("Yes", "yes", ["yes", "no"]) == 100.0
    assert exact_match("The answer is positive", "Positive", ["Positive", "Negative"]) == 100.0
    assert extract_label("I know it", ["yes", "no"]) is None
