"""A generated input and what became of it, and the prompt bookkeeping of input generation."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic.alias_generators import to_camel


@dataclass
class Candidate:
    """One generated input and its fate."""

    input: str
    round: int
    pseudo_label: str | None = None
    output: str | None = None
    dropped_at: str = "kept"
    """The step that dropped it: `input`, `annotation`, `balance`; `kept` when it reached the training set."""
    filter: str | None = None
    reason: str | None = None
    votes: int = 0
    valid_samples: int = 0
    scores: dict[str, float] | None = None
    """Likelihood annotation: each label's log-probability as the answer (before calibration)."""
    margin: float | None = None
    """Likelihood annotation: the winning label's lead over the runner-up, after calibration."""
    annotated: bool = False

    def drop(self, step: str, filter_name: str, reason: str) -> None:
        self.dropped_at, self.filter, self.reason = step, filter_name, reason

    def row(self) -> dict[str, Any]:
        return {to_camel(k): v for k, v in vars(self).items() if v is not None and k != "annotated"}


@dataclass
class PromptStats:
    built: int = 0
    trimmed: int = 0
    """Prompts that fitted only after dropping pool examples."""
    skipped: Counter = field(default_factory=Counter)
