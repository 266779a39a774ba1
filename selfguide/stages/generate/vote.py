"""Self-consistency: the majority answer among an input's annotation samples."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class VoteResult:
    answer: str | None
    """The winner, or None when there were no votes or it fell short of the minimum agreement."""
    votes: int
    total: int

    @property
    def agreement(self) -> float:
        return self.votes / self.total if self.total else 0.0


def majority_vote(answers: Sequence[str], min_agreement: float) -> VoteResult:
    """The most frequent answer if it holds at least `min_agreement` of the votes.

    Ties go to the shortest answer, then to the earliest (answers come most likely first)."""
    if not answers:
        return VoteResult(None, 0, 0)
    counts = Counter(answers)
    top = max(counts.values())
    winner = min((a for a in counts if counts[a] == top), key=len)  # min is stable: earliest among equals
    result = VoteResult(winner, top, len(answers))
    return result if result.agreement >= min_agreement else VoteResult(None, top, len(answers))
