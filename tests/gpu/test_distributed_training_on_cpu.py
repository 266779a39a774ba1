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


@pytest.mark.slow
def test_train_stage_runs_data_parallel_over_two_processes(tmp_path: Path) -> None:
    model, _ = random_llama("tiny", tmp_path / "model")
    workdir = tmp_path / "work"
    (workdir / "generate").mkdir(parents=True)
    rows = [{"input": f"review number {i}", "output": "positive" if i % 2 else "negative"} for i in range(8)]
    (workdir / "generate" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = {
        "apiVersion": "selfguide.dev/v1alpha1", "kind": "SelfGuideJob", "metadata": {"name": "dist"},
        "spec": {
            "task": {"type": "classification", "instruction": "Label the review.", "labels": ["positive", "negative"],
                     "examples": [{"input": "good", "output": "positive"}, {"input": "bad", "output": "negative"}]},
            "model": {"name": str(model)},
            "training": {"epochs": 1, "batchSize": 2},
        },
    }
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(manifest))
    record(workdir, "generate", validate_object(manifest).spec)  # what a completed generate stage leaves
    env = {**os.environ, "SELFGUIDE_TRAIN_PROCESSES": "2"}
    done = subprocess.run([sys.executable, "-m", "selfguide.cli", "stage", "train", "--spec", str(spec),
                           "--workdir", str(workdir)], env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])["summary"]
    assert summary["processes"] == 2
    assert summary["steps"] == 2  # 8 examples / (batch 2 x 2 processes)
    assert (workdir / "train" / "adapter" / "adapter_model.safetensors").is_file()
    assert not list((workdir / "train").glob(".*"))  # the hand-off files are gone
