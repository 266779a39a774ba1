"""Answer normalisation and label matching: one set of rules for annotation (`unique`) and scoring (`last`)."""

from __future__ import annotations

import pytest

from selfguide.text import LabelMatcher, normalize_answer

# -- answers and labels --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Positive", "positive"),
        ("  Yes.  ", "yes"),
        ("Hello, World!", "hello world"),
        ("a\tb\n\nc", "a b c"),
        ("The answer: B", "the answer b"),
        ("", ""),
        ("?!", ""),
        # Super-NaturalInstructions (eval/automatic/evaluation.py) deletes punctuation characters; it does
        # not turn them into spaces, so words with inner punctuation stay one word.
        ("Don't", "dont"),
        ("e-mail", "email"),
        ("not_entailment", "notentailment"),
    ],
)
def test_normalize_answer_matches_super_natural_instructions(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("positive", "positive"),
        ("Positive.", "positive"),
        ("  NEGATIVE  ", "negative"),
        ("The answer is negative.", "negative"),
        ("I think it's positive!", "positive"),
        ("positive or negative", None),  # two labels: ambiguous
        ("neutral", None),
        ("positively great", None),  # a label inside a longer word does not count
        ("", None),
    ],
)
def test_unique_label_sentiment(answer, label):
    assert LabelMatcher(["positive", "negative"]).unique(answer) == label


@pytest.mark.parametrize(
    ("answer", "label"),
    [("No.", "no"), ("yes", "yes"), ("I know", None), ("nothing", None), ("Yes, no doubt", None), ("Well, no", "no")],
)
def test_unique_label_whole_words_only(answer, label):
    assert LabelMatcher(["yes", "no"]).unique(answer) == label


def test_unique_label_returns_the_label_as_spelled_in_the_spec():
    mapper = LabelMatcher(["Entailment", "Contradiction", "Neutral"]).unique
    assert mapper("entailment") == "Entailment"
    assert mapper("I'd say CONTRADICTION.") == "Contradiction"
    letters = LabelMatcher(["E", "C", "N"]).unique
    assert letters("e") == "E"
    assert letters("The answer is C") == "C"


@pytest.mark.parametrize(
    ("answer", "unique", "last"),
    [
        ("positive at first, but in the end negative", None, "negative"),
        ("Positive.", "positive", "positive"),
        ("not sure", None, None),
        ("Negative, definitely negative", "negative", "negative"),
    ],
)
def test_annotation_and_scoring_share_matching_and_differ_only_in_resolution(answer, unique, last):
    matcher = LabelMatcher(["positive", "negative"])
    assert (matcher.unique(answer), matcher.last(answer)) == (unique, last)


def test_labels_with_punctuation_never_match_bare_words():
    matcher = LabelMatcher(["(A)", "(B)"])
    assert matcher.occurrences("a dog chased (B) then (A)") == ["(B)", "(A)"]
    assert matcher.unique("a b c") is None
