"""The annotator's accuracy on a task's gold validation inputs (`selfguide.stages.generate.annotator_accuracy`),
cached in a bench task's work directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfguide.artifacts import atomic_write_json, config_hash, read_json
from selfguide.spec import EvalExample, SelfGuideJobSpec
from selfguide.stages.generate.annotator_accuracy import measure

ANNOTATOR_FILE = "annotator.json"


def annotator_accuracy(spec: SelfGuideJobSpec, items: Sequence[EvalExample], workdir: Path) -> dict[str, Any]:
    """`measure` (camelCase, as a bench row holds it), cached in `workdir` for this model, task and generation
    configuration."""
    key = config_hash({"task": spec.task.to_camel_dict(), "model": spec.model.to_camel_dict(),
                       "generation": spec.generation.to_camel_dict(), "items": [i.input for i in items]})
    path = workdir / ANNOTATOR_FILE
    if path.is_file() and (cached := read_json(path)).get("key") == key:
        return dict(cached["result"])
    result = measure(spec, items).to_camel_dict()
    atomic_write_json(path, {"key": key, "result": result})
    return result
