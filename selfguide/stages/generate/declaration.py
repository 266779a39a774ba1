"""The generate stage, declared (light: the spec and the contract only; registered in pyproject.toml)."""

from __future__ import annotations

from selfguide.contract.layout import FILTER_REPORT, TRAIN_DATA
from selfguide.contract.registry import StageDefinition
from selfguide.contract.results import GenerateResult

GENERATE = StageDefinition(
    name="generate",
    reads=("task", "model", "generation"),
    after=(),
    entry_point="selfguide.stages.generate.stage:run",
    result=GenerateResult,
    artifacts=lambda spec: (TRAIN_DATA, FILTER_REPORT),
    output_field="dataset",
    status_field="generation",
    progress_counters=("rounds_done", "rounds_total", "inputs_generated", "inputs_annotated", "inputs_total"),
)
