"""The task: what the model should learn to do, described by an instruction and a few examples."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from selfguide.spec.base import SpecModel
from selfguide.spec.problems import raise_if_any

MAX_TEXT = 16_384
"""Longest instruction, example input or example output (characters); keeps the object well inside etcd."""

MAX_LABEL = 256
CEL_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
"""What CEL's `trim()` removes (Go's unicode.IsSpace); Python's `strip()` also removes \\x1c-\\x1f."""


def cel_trim(text: str) -> str:
    """`text.trim()` as the CRD's CEL rules compute it."""
    return text.strip(CEL_SPACE)

Text = Annotated[str, Field(max_length=MAX_TEXT)]


class TaskType(StrEnum):
    GENERATION = "generation"
    CLASSIFICATION = "classification"


class Example(SpecModel):
    """One gold demonstration of the task."""

    input: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    """The task input, verbatim."""
    output: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    """The expected output; for classification, one of `labels`."""


class TaskSpec(SpecModel):
    """What the model should learn: an instruction, a handful of examples and, for classification, labels."""

    type: TaskType = TaskType.GENERATION
    """`generation` (free text, scored with ROUGE-L) or `classification` (a label, scored with Exact Match)."""
    instruction: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    """The task description given to the model, as a user would write it."""
    examples: Annotated[list[Example], Field(min_length=1, max_length=64)]
    """Gold input/output pairs (the paper uses about three). They seed generation and few-shot prompts."""
    labels: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_LABEL)]] | None, Field(max_length=100)
    ] = None
    """The label set (classification only): at least two distinct labels."""

    @model_validator(mode="after")
    def _labels_fit_the_task(self) -> TaskSpec:
        problems: list[tuple[str, str]] = []
        if self.type is TaskType.CLASSIFICATION:
            if not self.labels:
                problems.append(("labels", "classification needs a list of at least two labels"))
            else:
                # the CRD's CEL rule compares trim().lowerAscii(): strip and lower ASCII letters only, likewise
                if len({cel_trim(label).encode().lower() for label in self.labels}) != len(self.labels):
                    problems.append(("labels", "labels must be distinct (ignoring case and surrounding spaces)"))
                if len(set(self.labels)) < 2:
                    problems.append(("labels", "classification needs at least two distinct labels"))
                for i, example in enumerate(self.examples):
                    if example.output not in self.labels:
                        problems.append(
                            (f"examples[{i}].output", f"{example.output!r} is not one of the labels {self.labels}")
                        )
        elif self.labels is not None:
            problems.append(("labels", "labels are only allowed when type is classification"))
        raise_if_any(problems)
        return self
