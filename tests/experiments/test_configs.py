"""Every configuration shipped in benchmarks/configs builds a valid job for both task types (a misspelt or
out-of-range field fails here, not an hour into a bench run), and says what it promises to."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from selfguide.experiments.bench import BenchTask, build_job, overrides_for
from selfguide.spec import TaskType
from tests.experiments.test_bench import GENERATION_TASK, TASK
from tests.stage_runs import REPO

CONFIGS = sorted((REPO / "benchmarks" / "configs").glob("*.yaml"))
TASKS = {TaskType.CLASSIFICATION: TASK, TaskType.GENERATION: GENERATION_TASK}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.stem)
@pytest.mark.parametrize("task_type", list(TASKS))
def test_a_shipped_config_builds_a_valid_job(config: Path, task_type: TaskType):
    overrides = overrides_for(task_type, yaml.safe_load(config.read_text()) or {})
    job = build_job(BenchTask.load(TASKS[task_type]), Path("/dev/null"), overrides)
    assert job.spec.task.type is task_type


def test_calibrated_likelihood_changes_only_how_classification_is_annotated():
    config = yaml.safe_load((REPO / "benchmarks" / "configs" / "calibrated-likelihood.yaml").read_text())
    classification = overrides_for(TaskType.CLASSIFICATION, config)
    assert classification == {"generation": {"annotation": {"method": "likelihood", "calibration": "batch"}}}
    assert overrides_for(TaskType.GENERATION, config) == {}
