"""Scores as Super-NaturalInstructions defines them.

* Exact Match (classification): the prediction is the *last* occurrence of any known label in the model's
  answer, as a whole word and ignoring case (SELF-GUIDE's extraction, without matching inside words; known
  labels = the task's labels plus every gold output), compared
  with the gold output after SNI normalisation (lower case, punctuation removed, whitespace collapsed).
* ROUGE-L (generation): token-level ROUGE-L F-measure from `rouge-score` with Porter stemming, the best over
  all references (the usual SNI metric; SELF-GUIDE's code used a character-level LCS instead).
Both are reported on a 0-100 scale.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from selfguide.stages.generate.filters import normalize_answer

EXACT_MATCH = "exact_match"
ROUGE_L = "rouge_l"


@lru_cache(maxsize=64)
def _label_pattern(labels: frozenset[str]) -> re.Pattern[str] | None:
    ordered = sorted(labels, key=len, reverse=True)  # the longest label wins at one position
    if not ordered:
        return None
    return re.compile(rf"(?<!\w)(?:{'|'.join(map(re.escape, ordered))})(?!\w)", re.IGNORECASE)


def extract_label(answer: str, labels: Iterable[str]) -> str | None:
    """The last occurrence of any label in `answer`, as a whole word and ignoring case (SELF-GUIDE's
    last-occurrence rule; its raw substring match would read "no" inside "not")."""
    pattern = _label_pattern(frozenset(labels))
    matches = list(pattern.finditer(answer)) if pattern else []
    return matches[-1].group(0) if matches else None


def exact_match(answer: str, gold: str, labels: Iterable[str]) -> float:
    """100 when the label extracted from `answer` equals `gold` after normalisation, else 0."""
    predicted = extract_label(answer, labels)
    return 100.0 if predicted is not None and normalize_answer(predicted) == normalize_answer(gold) else 0.0


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(answer: str, references: Sequence[str]) -> float:
    """Best ROUGE-L F-measure of `answer` against any reference, 0-100."""
    scorer = _scorer()
    return 100.0 * max(scorer.score(reference, answer)["rougeL"].fmeasure for reference in references)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
