"""The `train` stage: fine-tune the base model on the `generate` stage's training set.

With several GPUs in the pod the stage launches itself under `torch.distributed.run` (one process per GPU,
data parallel); rank 0 writes the adapter, the metrics and the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from selfguide.artifacts import atomic_write_json, read_json, read_jsonl
from selfguide.errors import PermanentError
from selfguide.workdir import FILTER_REPORT, TRAIN_DATA
from selfguide.engine.models import locate
from selfguide.spec import Example, SelfGuideJobSpec

PROCESSES_ENV = "SELFGUIDE_TRAIN_PROCESSES"
"""Training processes in the pod (default: one per visible GPU); set to 2+ on CPU to exercise the
distributed path without GPUs."""
SUMMARY_FILE = ".train-summary.json"


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
    import torch

    return max(1, torch.cuda.device_count())


def train_here(spec: SelfGuideJobSpec, workdir: Path, staging: Path) -> dict[str, Any] | None:
    """Train in this process (one rank of a distributed run, or the only one); the summary on rank 0."""
    from selfguide.runner import stage_hash
    from selfguide.engine.trainer import train

    result = train(
        locate(spec.model), spec.model, spec.task, spec.training, load_training_set(workdir), staging,
        checkpoint_dir=workdir / ".checkpoints" / f"train-{stage_hash(spec, 'train')}",
        base_model_name=spec.model.name,
    )
    if result is None:  # not rank 0
        return None
    return {
        "examples": result.examples,
        "steps": result.steps,
        "epochs": result.epochs,
        "processes": result.processes,
        "firstLoss": round(result.losses[0], 4) if result.losses else None,
        "finalLoss": round(result.losses[-1], 4) if result.losses else None,
        "trainableParameters": result.trainable_parameters,
        "tokensPerSecond": round(result.tokens_per_second, 1),
        "method": spec.training.method.value,
    }


def train_stage(spec: SelfGuideJobSpec, workdir: Path, staging: Path) -> dict[str, Any]:
    processes = training_processes()
    if processes == 1:
        summary = train_here(spec, workdir, staging)
        assert summary is not None
        return summary
    load_training_set(workdir)  # fail fast, before starting processes
    spec_file = staging / ".spec.json"
    atomic_write_json(spec_file, spec.to_manifest())
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "selfguide.stages.train.stage", "--spec", str(spec_file), "--workdir", str(workdir),
               "--staging", str(staging)]
    completed = subprocess.run(command, check=False)
    spec_file.unlink(missing_ok=True)
    if completed.returncode != 0:
        raise RuntimeError(f"distributed training ({processes} processes) failed with exit code {completed.returncode}")
    summary_file = staging / SUMMARY_FILE
    summary = read_json(summary_file)
    summary_file.unlink()
    return summary


def _worker() -> None:
    """One rank of a distributed `train` stage (started by `train_stage` through torch.distributed.run)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--staging", type=Path, required=True)
    args = parser.parse_args()
    spec = SelfGuideJobSpec.model_validate(json.loads(args.spec.read_text(encoding="utf-8")))
    summary = train_here(spec, args.workdir, args.staging)
    if summary is not None:
        atomic_write_json(args.staging / SUMMARY_FILE, summary)


if __name__ == "__main__":
    _worker()
