"""Rule-based filters on generated inputs and annotation samples (SELF-GUIDE section 2.3).

Every filter is a small object with a `name` and a `reason(text)` that returns None to keep the text or
a short drop reason. Nothing here is shared between jobs: term lists and seen-sets live in the instances.
"""

from __future__ import annotations

import re
import statistics
import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

GREETINGS = (
    "Sure, I'd be happy to help!",
    "Of course!",
    "Let me check on that.",
    "I'm here to help.",
    "Great question!",
    "Let me see.",
    "That's a good question.",
    "Thanks for asking.",
    "Let me help you with that.",
    "No problem, here's the answer.",
    "I'm glad you asked.",
    "Alright, let me explain.",
    "Absolutely!",
    "I understand your question.",
)
"""The paper's noise phrases: chat boilerplate that signals a completion is not a task input/output."""

PROMPT_MARKERS = ("[input]", "[output]", "[instruction]")
"""The prompts' own markers: a completion that contains one is talking about the prompt, not doing the task.
(The reference code used the bare words "input" and "output", which also drops genuine task text.)"""


class TextFilter(Protocol):
    name: str

    def reason(self, text: str) -> str | None:
        """None to keep `text`, else why it is dropped."""


class EmptyFilter:
    name = "empty"

    def reason(self, text: str) -> str | None:
        return "empty" if not text.strip() else None


@dataclass(frozen=True)
class LengthBand:
    low: float
    high: float


def length_band(reference: Sequence[str], sigmas: float, min_spread: float) -> LengthBand:
    """mean +/- sigmas * sd of the reference lengths (characters, population sd, as the reference code).

    The half-width is at least `min_spread * mean`, so identical gold lengths (sd = 0) still admit
    near-identical lengths, and the lower bound is clamped at zero (the reference code drops everything
    in both cases)."""
    lengths = [len(text) for text in reference]
    mean = statistics.fmean(lengths)
    half = max(sigmas * statistics.pstdev(lengths), min_spread * mean)
    return LengthBand(max(0.0, mean - half), mean + half)


class LengthFilter:
    name = "length"

    def __init__(self, band: LengthBand) -> None:
        self.band = band

    def reason(self, text: str) -> str | None:
        n = len(text)
        if n < self.band.low:
            return "too_short"
        if n > self.band.high:
            return "too_long"
        return None


class NoiseFilter:
    """Drops texts containing a noise term: a greeting, a prompt marker or a job's own term
    (case-insensitive substring)."""

    name = "noise"

    def __init__(self, extra_terms: Iterable[str] = ()) -> None:
        self.terms = tuple(term.casefold() for term in (*GREETINGS, *PROMPT_MARKERS, *extra_terms))

    def reason(self, text: str) -> str | None:
        folded = text.casefold()
        return "noise_term" if any(term in folded for term in self.terms) else None


def dedup_key(text: str) -> str:
    """Exact-duplicate identity: whitespace differences do not make a new input."""
    return " ".join(text.split())


QUOTES_AND_PUNCTUATION = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb"


def normalized_key(text: str) -> str:
    """Identity after normalisation: case, whitespace, and punctuation or quotes around the text ignored
    (`The battery lasts all day.",` is the gold `The battery lasts all day.`)."""
    return " ".join(text.casefold().split()).strip(QUOTES_AND_PUNCTUATION + " ")


@dataclass
class DuplicateFilter:
    """Drops duplicates of the gold inputs and of inputs accepted earlier (call `add` on accept): `duplicate`
    when equal up to whitespace, `normalized_duplicate` when equal after `normalized_key`."""

    name: str = "duplicate"
    seen: set[str] = field(default_factory=set)
    seen_normalized: set[str] = field(default_factory=set)

    def reason(self, text: str) -> str | None:
        if dedup_key(text) in self.seen:
            return "duplicate"
        return "normalized_duplicate" if normalized_key(text) in self.seen_normalized else None

    def add(self, text: str) -> None:
        self.seen.add(dedup_key(text))
        self.seen_normalized.add(normalized_key(text))


PLACEHOLDER = re.compile(r"\[[^\[\]\n]{1,40}\]")
"""A bracketed placeholder such as `[input]`, `[new]` or `[original prompt]`."""
TEMPLATE_PHRASES = ("inputgenerator", "high-quality [input]", "low-quality [input]", "new [instruction]",
                    "expected [output]")
"""Phrases of the input-generation prompt itself."""


class ScaffoldingFilter:
    """Drops texts that carry prompt scaffolding instead of task text: a bracketed placeholder that no gold
    text contains (gold inputs with `[x]` in them keep `[x]` allowed), or a phrase of the prompt template."""

    name = "scaffolding"

    def __init__(self, gold: Iterable[str]) -> None:
        texts = [text.casefold() for text in gold]
        self.allowed = {match.casefold() for text in texts for match in PLACEHOLDER.findall(text)}
        self.phrases = tuple(p for p in TEMPLATE_PHRASES if not any(p in text for text in texts))

    def reason(self, text: str) -> str | None:
        folded = text.casefold()
        if any(match not in self.allowed for match in PLACEHOLDER.findall(folded)):
            return "placeholder"
        return "template_phrase" if any(phrase in folded for phrase in self.phrases) else None


FOREIGN_SCRIPT_SHARE = 0.2
"""Share of a text's letters written in scripts that no gold text uses, above which it is dropped."""


def scripts(text: str) -> list[str]:
    """The Unicode script of each letter of `text`, from its character name (`LATIN`, `CYRILLIC`, `CJK`...)."""
    return [unicodedata.name(char, "?").split(" ", 1)[0] for char in text if char.isalpha()]


class ScriptFilter:
    """Beyond the paper: drops texts written mostly in a script that the gold texts do not use. A small
    generator drifts into other languages (Cyrillic gibberish for an English news task); such inputs, once in
    the pool, are shown to the next prompts and breed more, and cost several times the tokens of the same
    number of characters in the gold script. Gold texts without letters enable nothing."""

    name = "script"

    def __init__(self, gold: Iterable[str]) -> None:
        self.known = {script for text in gold for script in scripts(text)}

    def reason(self, text: str) -> str | None:
        letters = scripts(text)
        if not self.known or not letters:
            return None
        foreign = sum(script not in self.known for script in letters)
        return "foreign_script" if foreign > FOREIGN_SCRIPT_SHARE * len(letters) else None


def shingles(text: str, n: int = 3) -> frozenset[str]:
    folded = " ".join(text.casefold().split())
    return frozenset(folded[i : i + n] for i in range(max(1, len(folded) - n + 1)))


@dataclass
class NearDuplicateFilter:
    """Beyond the paper: drops texts whose character-trigram Jaccard similarity to an accepted one
    reaches `threshold` (call `add` on accept)."""

    threshold: float
    name: str = "near_duplicate"
    kept: list[frozenset[str]] = field(default_factory=list)

    def reason(self, text: str) -> str | None:
        grams = shingles(text)
        for other in self.kept:
            union = len(grams | other)
            if union and len(grams & other) / union >= self.threshold:
                return "near_duplicate"
        return None

    def add(self, text: str) -> None:
        self.kept.append(shingles(text))


def first_failure(filters: Sequence[TextFilter], text: str) -> tuple[str, str] | None:
    """`(filter name, reason)` of the first filter that drops `text`, or None when all keep it."""
    for f in filters:
        reason = f.reason(text)
        if reason is not None:
            return f.name, reason
    return None
