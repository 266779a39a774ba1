"""Cross-field rule violations that point at a precise field, not just at the model holding it."""

from __future__ import annotations


class SpecProblems(ValueError):
    """Raised by a model validator with one or more `(relative path, message)` problems.

    Pydantic reports a model validator's error at the model's location; the manifest validator
    (selfguide.manifest) appends each relative path to it, so a user reads
    `spec.task.examples[1].output: ...` instead of a vague `spec.task: ...`.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" if path else message for path, message in problems))


def raise_if_any(problems: list[tuple[str, str]]) -> None:
    """Raise `SpecProblems` when the list is not empty."""
    if problems:
        raise SpecProblems(problems)
