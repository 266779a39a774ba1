"""The multi-GPU training path (one process per device under torch.distributed.run), exercised on CPU with
two processes (gloo) and a tiny random model, so it is tested where no GPU exists."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.random_model import random_llama
from selfguide.manifest import validate_object
from tests.test_runner import record


def stage_train(tmp_path: Path, model: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`selfguide stage train` over two processes on a generated set of 8 examples: the work directory and the
    finished process."""
    workdir = tmp_path / "work"
    (workdir / "generate").mkdir(parents=True)
    rows = [{"input": f"review number {i}", "output": "positive" if i % 2 else "negative"} for i in range(8)]
    (workdir / "generate" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {
        "apiVersion": "selfguide.dev/v1alpha1", "kind": "SelfGuideJob", "metadata": {"name": "dist"},
        "spec": {
            "task": {"type": "classification", "instruction": "Label the review.", "labels": ["positive", "negative"],
                     "examples": [{"input": "good", "output": "positive"}, {"input": "bad", "output": "negative"}]},
            "model": {"name": model},
            "training": {"epochs": 1, "batchSize": 2},
        },
    }
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(manifest))
    record(workdir, "generate", validate_object(manifest).spec)  # what a completed generate stage leaves
    env = {**os.environ, "SELFGUIDE_TRAIN_PROCESSES": "2", "SELFGUIDE_TERMINATION_LOG": str(tmp_path / "termination")}
    done = subprocess.run([sys.executable, "-m", "selfguide.cli", "stage", "train", "--spec", str(spec),
                           "--workdir", str(workdir)], env=env, capture_output=True, text=True, timeout=600, check=False)
    return workdir, done


@pytest.mark.slow
def test_train_stage_runs_data_parallel_over_two_processes(tmp_path: Path) -> None:
    model, _ = random_llama("tiny", tmp_path / "model")
    workdir, done = stage_train(tmp_path, str(model))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])["summary"]
    assert summary["processes"] == 2
    assert summary["steps"] == 2  # 8 examples / (batch 2 x 2 processes)
    assert (workdir / "train" / "adapter" / "adapter_model.safetensors").is_file()
    assert not list((workdir / "train").glob(".*"))  # the hand-off files are gone


@pytest.mark.slow
def test_a_ranks_permanent_error_fails_the_stage_for_good(tmp_path: Path) -> None:
    """A rank that fails with a PermanentError (no model at the path: ModelNotFound) ends the stage with exit
    code 3 and a permanent termination message, not as a retryable failure of torch.distributed.run."""
    _, done = stage_train(tmp_path, str(tmp_path / "no-model"))
    assert done.returncode == 3, done.stderr[-3000:]
    message = json.loads((tmp_path / "termination").read_text())
    assert message["permanent"] is True and "does not exist" in message["error"]
