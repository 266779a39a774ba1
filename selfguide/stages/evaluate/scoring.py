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

from collections.abc import Iterable, Sequence
from functools import lru_cache

from selfguide.contract.results import Metric
from selfguide.text import LabelMatcher, normalize_answer

EXACT_MATCH = Metric.EXACT_MATCH
ROUGE_L = Metric.ROUGE_L


def extract_label(answer: str, labels: Iterable[str]) -> str | None:
    """The last label named in `answer` (SELF-GUIDE's last-occurrence rule, as whole words: its raw substring
    match would read "no" inside "not")."""
    return _matcher(frozenset(labels)).last(answer)


@lru_cache(maxsize=64)
def _matcher(labels: frozenset[str]) -> LabelMatcher:
    return LabelMatcher(labels)


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
