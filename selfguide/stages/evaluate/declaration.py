"""The evaluate stage, declared (light: the spec and the contract only; registered in pyproject.toml)."""

from __future__ import annotations

from selfguide.contract.layout import REPORT, REPORT_HTML
from selfguide.contract.registry import StageDefinition
from selfguide.contract.results import EvaluateResult

EVALUATE = StageDefinition(
    name="evaluate",
    reads=("task", "model", "generation", "training", "evaluation"),
    after=("generate", "train"),
    entry_point="selfguide.stages.evaluate.stage:run",
    result=EvaluateResult,
    artifacts=lambda spec: (REPORT, REPORT_HTML),
    output_field="report",
    status_field="evaluation",
    progress_counters=("items_scored", "items_total"),
    preflight="selfguide.stages.evaluate.stage:preflight",
    enabled=lambda spec: spec.evaluation is not None,
)
