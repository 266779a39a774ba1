"""The `train` stage: fine-tune the base model on the `generate` stage's training set.

With several GPUs in the pod the stage launches itself under `torch.distributed.run` (one process per GPU,
data parallel); rank 0 writes the adapter, the metrics and the result. A rank that fails with a selfguide error
(a permanent one, say) hands it back, so that the stage ends with that error's exit code, not a retryable one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from selfguide.artifacts import atomic_write_json, read_json, read_jsonl
from selfguide.contract.errors import PermanentError, SelfGuideError, error_for
from selfguide.contract.layout import FILTER_REPORT, TRAIN_DATA
from selfguide.contract.results import TrainResult
from selfguide.engine.devices import gpu_count
from selfguide.engine.models import locate
from selfguide.engine.trainer import train
from selfguide.spec import Example, SelfGuideJobSpec
from selfguide.stages.context import StageContext

PROCESSES_ENV = "SELFGUIDE_TRAIN_PROCESSES"
"""Training processes in the pod (default: one per visible GPU); set to 2+ on CPU to exercise the
distributed path without GPUs."""
RESULT_FILE = ".train-result.json"
ERROR_FILE = ".train-error.json"
"""Where a rank that failed on purpose leaves its exit code and message, for `run` to raise that error again."""


def load_training_set(workdir: Path) -> list[Example]:
    """The generated examples; an empty or missing set is a permanent error (retrying cannot help)."""
    path = workdir / TRAIN_DATA
    if not path.is_file():
        raise PermanentError(f"{path} is missing: run the generate stage first")
    examples = [Example(input=row["input"], output=row["output"]) for row in read_jsonl(path)]
    if not examples:
        raise PermanentError(
            "the generate stage kept no examples, so there is nothing to train on; see "
            f"{FILTER_REPORT} (more rounds, a higher input temperature or looser filters help)"
        )
    return examples


def training_processes() -> int:
    if PROCESSES_ENV in os.environ:
        return max(1, int(os.environ[PROCESSES_ENV]))
    return max(1, gpu_count())


def train_here(spec: SelfGuideJobSpec, workdir: Path, output: Path, checkpoints: Path) -> TrainResult | None:
    """Train in this process (one rank of a distributed run, or the only one); the result on rank 0."""
    outcome = train(locate(spec.model), spec.model, spec.task, spec.training, load_training_set(workdir), output,
                    checkpoint_dir=checkpoints, base_model_name=spec.model.name)
    if outcome is None:  # not rank 0
        return None
    return TrainResult(
        examples=outcome.examples, steps=outcome.steps, epochs=outcome.epochs, processes=outcome.processes,
        first_loss=round(outcome.losses[0], 4) if outcome.losses else None,
        final_loss=round(outcome.losses[-1], 4) if outcome.losses else None,
        trainable_parameters=outcome.trainable_parameters,
        tokens_per_second=round(outcome.tokens_per_second, 1), method=spec.training.method.value,
    )


def run(ctx: StageContext) -> TrainResult:
    processes = training_processes()
    if processes == 1:
        result = train_here(ctx.spec, ctx.workdir, ctx.output, ctx.checkpoints)
        assert result is not None
        return result
    load_training_set(ctx.workdir)  # fail fast, before starting processes
    spec_file = ctx.output / ".spec.json"
    atomic_write_json(spec_file, ctx.spec.to_camel_dict())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "selfguide.stages.train.stage", "--spec", str(spec_file), "--workdir", str(ctx.workdir),
               "--output", str(ctx.output), "--checkpoints", str(ctx.checkpoints)]
    completed = subprocess.run(command, check=False)
    spec_file.unlink(missing_ok=True)
    if completed.returncode != 0:
        error_file = ctx.output / ERROR_FILE
        if error_file.is_file():  # a rank's SelfGuideError: its exit code, not a retryable one
            failure = read_json(error_file)
            error_file.unlink()
            raise error_for(failure["exitCode"], failure["error"])
        raise RuntimeError(f"distributed training ({processes} processes) failed with exit code {completed.returncode}")
    result_file = ctx.output / RESULT_FILE
    result = TrainResult.model_validate(read_json(result_file))
    result_file.unlink()
    return result


def _worker() -> None:
    """One rank of a distributed `train` stage (started by `run` through torch.distributed.run)."""
    parser = argparse.ArgumentParser()
    for option in ("--spec", "--workdir", "--output", "--checkpoints"):
        parser.add_argument(option, type=Path, required=True)
    args = parser.parse_args()
    spec = SelfGuideJobSpec.model_validate(json.loads(args.spec.read_text(encoding="utf-8")))
    try:
        result = train_here(spec, args.workdir, args.output, args.checkpoints)
    except SelfGuideError as error:
        atomic_write_json(args.output / ERROR_FILE, {"exitCode": int(error.exit_code), "error": str(error)})
        raise
    if result is not None:
        atomic_write_json(args.output / RESULT_FILE, result.model_dump(mode="json", by_alias=True))


if __name__ == "__main__":
    _worker()
