"""The annotator's ceiling: how well the model labels the *gold* validation inputs of a classification task
with the job's own annotation method and prompt. Self-training cannot teach what the annotator does not know,
so `selfguide bench` reports this beside the scores, with the majority-class share it must beat."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfguide.artifacts import atomic_write_json, config_hash, read_json
from selfguide.engine.backends import open_backend
from selfguide.spec import EvalExample, SelfGuideJobSpec
from selfguide.stages.generate.annotate import Annotator
from selfguide.stages.generate.candidates import Candidate
from selfguide.stages.generate.stage import output_filters, votes_per_input
from selfguide.text import normalize_answer

ANNOTATOR_FILE = "annotator.json"


def measure(spec: SelfGuideJobSpec, items: Sequence[EvalExample]) -> dict[str, Any]:
    """Annotate `items` as generated inputs would be; accuracy and coverage in percent."""
    annotation = spec.generation.annotation.model_copy(update={"require_pseudo_label": False, "min_margin": 0.0})
    spec = spec.model_copy(update={"generation": spec.generation.model_copy(update={"annotation": annotation})})
    backend = open_backend(spec.model, spec.generation, spec.generation.batch_size, sequences=len(items) * max(1, votes_per_input(spec)))
    try:
        annotator = Annotator(spec, backend, output_filters(spec))
        candidates = [Candidate(item.input, round=-1) for item in items]
        annotator.annotate(candidates)
        annotator.finish(candidates)
    finally:
        backend.close()
    correct = sum(c.dropped_at == "kept" and normalize_answer(c.output or "") == normalize_answer(item.output)
                  for c, item in zip(candidates, items))
    labelled = sum(c.dropped_at == "kept" for c in candidates)
    majority = Counter(item.output for item in items).most_common(1)[0][1] if items else 0
    percent = 100.0 / max(1, len(items))
    return {"items": len(items), "method": annotation.method.value, "calibration": annotation.calibration.value,
            "accuracy": round(correct * percent, 1), "coverage": round(labelled * percent, 1),
            "majorityShare": round(majority * percent, 1)}


def annotator_accuracy(spec: SelfGuideJobSpec, items: Sequence[EvalExample], workdir: Path) -> dict[str, Any]:
    """`measure`, cached in `workdir` for this model, task and generation configuration."""
    key = config_hash({"task": spec.task.to_camel_dict(), "model": spec.model.to_camel_dict(),
                       "generation": spec.generation.to_camel_dict(), "items": [i.input for i in items]})
    path = workdir / ANNOTATOR_FILE
    if path.is_file() and (cached := read_json(path)).get("key") == key:
        return dict(cached["result"])
    result = measure(spec, items)
    atomic_write_json(path, {"key": key, "result": result})
    return result
