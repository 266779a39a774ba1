"""Small valid SelfGuideJob manifests (as decoded YAML) that tests mutate."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CLASSIFICATION: dict[str, Any] = {
    "apiVersion": "selfguide.dev/v1alpha1",
    "kind": "SelfGuideJob",
    "metadata": {"name": "sentiment"},
    "spec": {
        "task": {
            "type": "classification",
            "instruction": "Decide whether the review is positive or negative.",
            "labels": ["positive", "negative"],
            "examples": [
                {"input": "Great battery, lovely screen.", "output": "positive"},
                {"input": "It broke after two days.", "output": "negative"},
                {"input": "Good value, would buy again.", "output": "positive"},
            ],
        },
    },
}

GENERATION: dict[str, Any] = {
    "apiVersion": "selfguide.dev/v1alpha1",
    "kind": "SelfGuideJob",
    "metadata": {"name": "reverse-words"},
    "spec": {
        "task": {
            "type": "generation",
            "instruction": "Reverse the order of the words.",
            "examples": [
                {"input": "red green blue", "output": "blue green red"},
                {"input": "one two three four", "output": "four three two one"},
                {"input": "cat dog", "output": "dog cat"},
            ],
        },
    },
}


def classification() -> dict[str, Any]:
    return copy.deepcopy(CLASSIFICATION)


def generation() -> dict[str, Any]:
    return copy.deepcopy(GENERATION)


def write(path: Path, *documents: Any) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return path
