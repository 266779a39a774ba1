"""Text normalisation and label matching, one set of rules for annotation and for scoring.

* `normalize_answer`: Super-NaturalInstructions' normalisation (lower case, punctuation deleted, single spaces).
* `LabelMatcher`: finds the task's labels in a free-text answer as whole words, ignoring case (a label inside
  a longer word never counts: "no" is not in "not"; at one position the longest label wins: "10" over "1").
  An answer that *is* a label after normalisation maps to it directly. Annotation keeps only answers that
  name exactly one label (`unique`); scoring takes the last label named (`last`, SELF-GUIDE's rule).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalize_answer(text: str) -> str:
    """Super-NaturalInstructions normalisation: lower case, punctuation deleted, single spaces."""
    return " ".join(_PUNCT.sub("", text.lower()).split())


class LabelMatcher:
    """Maps free-text answers onto a label space; labels come back as spelled in the label list."""

    def __init__(self, labels: Iterable[str]) -> None:
        ordered = sorted(dict.fromkeys(label for label in labels if label), key=len, reverse=True)
        self.by_norm = {normalize_answer(label): label for label in reversed(ordered)}
        self.by_fold = {label.casefold(): label for label in reversed(ordered)}
        self.pattern = re.compile(rf"(?<!\w)(?:{'|'.join(map(re.escape, ordered))})(?!\w)", re.IGNORECASE) \
            if ordered else None

    def occurrences(self, answer: str) -> list[str]:
        """The labels named in `answer`, in order of position."""
        if self.pattern is None:
            return []
        return [self.by_fold[match.group(0).casefold()] for match in self.pattern.finditer(answer)]

    def _exact(self, answer: str) -> str | None:
        norm = normalize_answer(answer)
        return self.by_norm.get(norm) if norm else None

    def unique(self, answer: str) -> str | None:
        """The one label the answer names, or None when it names none or several different ones."""
        if (exact := self._exact(answer)) is not None:
            return exact
        found = set(self.occurrences(answer))
        return found.pop() if len(found) == 1 else None

    def last(self, answer: str) -> str | None:
        """The last label the answer names (the label the answer settles on), or None."""
        if (exact := self._exact(answer)) is not None:
            return exact
        found = self.occurrences(answer)
        return found[-1] if found else None
