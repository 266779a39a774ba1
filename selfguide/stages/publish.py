"""Publishing: once a job's last stage succeeded and its quality gate (if any) passed, leave ready-to-use serving
files in `<workdir>/serving/` (what the stages' `serving` hooks give); a job whose model missed the gate has none
(stale ones are removed)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, cast

from selfguide.artifacts import atomic_dir, atomic_write_json, atomic_write_text
from selfguide.contract.layout import SERVING_DIR, VLLM_SCRIPT_FILE
from selfguide.contract.publication import may_publish
from selfguide.contract.registry import load, stages_for
from selfguide.contract.results import EvaluateResult, StageResult
from selfguide.spec import SelfGuideJobSpec


def is_last_stage(spec: SelfGuideJobSpec, stage: str) -> bool:
    return stages_for(spec)[-1].name == stage


def serving_files(spec: SelfGuideJobSpec, workdir: Path, name: str, namespace: str) -> dict[str, Any]:
    """What `<workdir>/serving/` holds, by file name: the files each of the job's stages adds (its declaration's
    `serving` hook), in pipeline order."""
    files: dict[str, Any] = {}
    for definition in stages_for(spec):
        if definition.serving is not None:
            files |= cast(dict[str, Any], load(definition.serving)(spec, workdir, name, namespace))
    return files


def publish(spec: SelfGuideJobSpec, workdir: Path, stage: str, result: StageResult, name: str,
            namespace: str = "default") -> Path | None:
    """After stage `stage` succeeded with `result`: write the serving files when it was the last stage and the
    model may be published (`selfguide.contract.publication.may_publish`, the operator's rule too), remove them
    when it may not. Returns the serving directory when written."""
    if not is_last_stage(spec, stage):
        return None
    target = workdir / SERVING_DIR
    if not may_publish(spec, result if isinstance(result, EvaluateResult) else None):
        shutil.rmtree(target, ignore_errors=True)
        return None
    with atomic_dir(target) as staging:
        for file, content in serving_files(spec, workdir, name, namespace).items():
            if isinstance(content, str):
                atomic_write_text(staging / file, content)
            else:
                atomic_write_json(staging / file, content)
        if (staging / VLLM_SCRIPT_FILE).is_file():
            (staging / VLLM_SCRIPT_FILE).chmod(0o755)
    return target
