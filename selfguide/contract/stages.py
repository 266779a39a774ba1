"""The built-in stages: generate, then train, then (when an evaluation set is given) evaluate."""

from __future__ import annotations

from selfguide.contract.layout import REPORT, TRAIN_DATA, trained_model_dir
from selfguide.contract.registry import StageDefinition, register_stage
from selfguide.contract.results import EvaluateResult, GenerateResult, TrainResult

GENERATE = register_stage(StageDefinition(
    name="generate",
    reads=("task", "model", "generation"),
    after=(),
    entry_point="selfguide.stages.generate.stage:run",
    result=GenerateResult,
    artifact=lambda spec: TRAIN_DATA,
    output_field="dataset",
    status_field="generation",
))
TRAIN = register_stage(StageDefinition(
    name="train",
    reads=("task", "model", "training"),
    after=("generate",),
    entry_point="selfguide.stages.train.stage:run",
    result=TrainResult,
    artifact=lambda spec: trained_model_dir(spec.training.method),
    output_field="adapter",
    status_field="training",
))
EVALUATE = register_stage(StageDefinition(
    name="evaluate",
    reads=("task", "model", "generation", "training", "evaluation"),
    after=("generate", "train"),
    entry_point="selfguide.stages.evaluate.stage:run",
    result=EvaluateResult,
    artifact=lambda spec: REPORT,
    output_field="report",
    status_field="evaluation",
    enabled=lambda spec: spec.evaluation is not None,
))
