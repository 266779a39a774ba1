"""The annotator's ceiling: how well the model labels *gold* inputs of a classification task with the job's own
annotation method and prompt. Self-training cannot teach what the annotator does not know, so the evaluate stage
(`spec.evaluation.annotatorAccuracy`) and `selfguide bench` report it beside the majority-class share it must
beat."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from selfguide.contract.findings import AnnotatorAccuracy
from selfguide.spec import EvalExample, SelfGuideJobSpec
from selfguide.stages.backend import opened
from selfguide.stages.generate.annotate import Annotator
from selfguide.stages.generate.candidates import Candidate
from selfguide.stages.generate.stage import output_filters, votes_per_input
from selfguide.text import normalize_answer


def measure(spec: SelfGuideJobSpec, items: Sequence[EvalExample]) -> AnnotatorAccuracy:
    """Annotate `items` as generated inputs would be (without the margin and pseudo-label filters, which drop
    rather than label) and compare with their gold labels."""
    annotation = spec.generation.annotation.model_copy(update={"require_pseudo_label": False, "min_margin": 0.0})
    spec = spec.model_copy(update={"generation": spec.generation.model_copy(update={"annotation": annotation})})
    with opened(spec, spec.generation.batch_size, len(items) * max(1, votes_per_input(spec))) as backend:
        annotator = Annotator(spec, backend, output_filters(spec))
        candidates = [Candidate(item.input, round=-1) for item in items]
        annotator.annotate(candidates)
        annotator.finish(candidates)
    correct = sum(c.dropped_at == "kept" and normalize_answer(c.output or "") == normalize_answer(item.output)
                  for c, item in zip(candidates, items))
    labelled = sum(c.dropped_at == "kept" for c in candidates)
    majority = Counter(item.output for item in items).most_common(1)[0][1] if items else 0
    percent = 100.0 / max(1, len(items))
    return AnnotatorAccuracy(items=len(items), method=annotation.method, calibration=annotation.calibration,
                             accuracy=round(correct * percent, 1), coverage=round(labelled * percent, 1),
                             majority_share=round(majority * percent, 1))
