"""The `train` stage: fine-tune the base model on the `generate` stage's training set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selfguide.artifacts import read_jsonl
from selfguide.errors import PermanentError
from selfguide.models import locate
from selfguide.spec import Example, SelfGuideJobSpec
from selfguide.stages.generate import TRAIN_FILE


def load_training_set(workdir: Path) -> list[Example]:
    """The generated examples; an empty or missing set is a permanent error (retrying cannot help)."""
    path = workdir / "generate" / TRAIN_FILE
    if not path.is_file():
        raise PermanentError(f"{path} is missing: run the generate stage first")
    examples = [Example(input=row["input"], output=row["output"]) for row in read_jsonl(path)]
    if not examples:
        raise PermanentError(
            "the generate stage kept no examples, so there is nothing to train on; see "
            "generate/filter_report.json (more rounds, a higher input temperature or looser filters help)"
        )
    return examples


def train_stage(spec: SelfGuideJobSpec, workdir: Path, staging: Path) -> dict[str, Any]:
    from selfguide.runner import stage_hash
    from selfguide.training import train

    examples = load_training_set(workdir)
    result = train(
        locate(spec.model), spec.model, spec.task, spec.training, examples, staging,
        checkpoint_dir=workdir / ".checkpoints" / f"train-{stage_hash(spec, 'train')}",
        base_model_name=spec.model.name,
    )
    return {
        "examples": result.examples,
        "steps": result.steps,
        "epochs": result.epochs,
        "firstLoss": round(result.losses[0], 4) if result.losses else None,
        "finalLoss": round(result.losses[-1], 4) if result.losses else None,
        "trainableParameters": result.trainable_parameters,
        "tokensPerSecond": round(result.tokens_per_second, 1),
        "method": spec.training.method.value,
    }
