"""Self-consistency voting over annotation samples."""

from __future__ import annotations

import pytest

from selfguide.stages.generate.vote import VoteResult, majority_vote


def test_majority_wins():
    result = majority_vote(["b", "a", "b", "c", "b"], min_agreement=0.3)
    assert result == VoteResult("b", 3, 5)
    assert result.agreement == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("votes", "total", "winner"),
    [(3, 10, "x"), (6, 20, "x"), (2, 10, None), (5, 20, None)],
)
def test_min_agreement_boundary_is_inclusive(votes, total, winner):
    answers = ["x"] * votes + [f"other {i}" for i in range(total - votes)]
    result = majority_vote(answers, min_agreement=0.3)
    assert result.answer == winner
    assert (result.votes, result.total) == (votes, total)


def test_below_min_agreement_keeps_the_counts():
    result = majority_vote(["a", "b", "c", "d"], min_agreement=0.3)
    assert result == VoteResult(None, 1, 4)
    assert result.agreement == 0.25


def test_ties_go_to_the_shortest_answer():
    assert majority_vote(["longer answer", "short", "longer answer", "short"], 0.0).answer == "short"


def test_equal_length_ties_go_to_the_earliest():
    assert majority_vote(["bbb", "aaa", "aaa", "bbb"], 0.0).answer == "bbb"
    assert majority_vote(["aaa", "bbb", "bbb", "aaa"], 0.0).answer == "aaa"


def test_a_clear_majority_beats_a_shorter_minority():
    assert majority_vote(["a", "long one", "long one"], 0.0).answer == "long one"


def test_empty_input():
    result = majority_vote([], min_agreement=0.0)
    assert result == VoteResult(None, 0, 0)
    assert result.agreement == 0.0


def test_unanimous_with_full_agreement_required():
    assert majority_vote(["x", "x"], min_agreement=1.0) == VoteResult("x", 2, 2)
    assert majority_vote(["x", "x", "y"], min_agreement=1.0).answer is None
