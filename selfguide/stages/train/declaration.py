"""The train stage, declared (light: the spec and the contract only; registered in pyproject.toml)."""

from __future__ import annotations

from selfguide.contract.layout import trained_model_dir
from selfguide.contract.registry import StageDefinition
from selfguide.contract.results import TrainResult

TRAIN = StageDefinition(
    name="train",
    reads=("task", "model", "training"),
    after=("generate",),
    entry_point="selfguide.stages.train.stage:run",
    result=TrainResult,
    artifacts=lambda spec: (trained_model_dir(spec.training.method),),
    output_field="adapter",
    status_field="training",
    progress_counters=("step", "steps_total", "loss"),
    serving="selfguide.stages.train.serving:serving_files",
)
