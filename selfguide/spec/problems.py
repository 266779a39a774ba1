"""Cross-field rule violations that point at a precise field, not just at the model holding it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError


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


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (a field path such as `spec.task.examples[1].output`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def join_path(base: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{base}[{part}]"
    return f"{base}.{part}" if base and not part.startswith("[") else base + part


def field_path(loc: Sequence[str | int]) -> str:
    """`('spec', 'task', 'examples', 1, 'output')` -> `spec.task.examples[1].output`."""
    path = ""
    for part in loc:
        path = join_path(path, part)
    return path


_FRIENDLY = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
}


def problems_from(error: ValidationError) -> list[Problem]:
    """One `Problem` per pydantic error (the one renderer of validation errors), expanding `SpecProblems`
    into their precise field paths.

    The offending input value is never echoed (it may be megabytes long, or a secret)."""
    problems: list[Problem] = []
    for item in error.errors(include_url=False, include_input=False):
        path = field_path(item["loc"])
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, SpecProblems):
            problems.extend(Problem(join_path(path, sub) if sub else path, msg) for sub, msg in cause.problems)
            continue
        message = _FRIENDLY.get(item["type"], item["msg"])
        problems.append(Problem(path, message.removeprefix("Value error, ")))
    return problems
