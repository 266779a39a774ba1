"""Publishing: once a job's last stage succeeded and its quality gate (if any) passed, leave ready-to-use serving
files in `<workdir>/serving/`; a job whose model missed the gate has none (stale ones are removed)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from selfguide.artifacts import atomic_dir, atomic_write_json, atomic_write_text
from selfguide.contract.environment import pvc_local_path
from selfguide.contract.layout import (
    MODEL_ADAPTER_FILE,
    SERVING_DIR,
    SERVING_JSON_FILE,
    VLLM_SCRIPT_FILE,
    trained_model_dir,
)
from selfguide.contract.publication import may_publish
from selfguide.contract.registry import stages_for
from selfguide.contract.results import EvaluateResult, StageResult
from selfguide.contract.serving import (
    base_model_path,
    model_adapter,
    served_model_name,
    shell_script,
    vllm_command,
)
from selfguide.spec import SelfGuideJobSpec, TrainingMethod
from selfguide.spec.uris import is_pvc


def is_last_stage(spec: SelfGuideJobSpec, stage: str) -> bool:
    return stages_for(spec)[-1].name == stage


def serving_files(spec: SelfGuideJobSpec, workdir: Path, name: str, namespace: str) -> dict[str, Any]:
    """What `<workdir>/serving/` holds, by file name (text, or JSON-able for serving.json)."""
    model_path = str(workdir.absolute() / trained_model_dir(spec.training.method))
    base = pvc_local_path(spec.model.name) if is_pvc(spec.model.name) else None
    command = vllm_command(spec, name, model_path, str(base) if base else None)
    files: dict[str, Any] = {VLLM_SCRIPT_FILE: shell_script(command)}
    description: dict[str, Any] = {"method": spec.training.method.value, "command": command,
                                   "modelPath": model_path}
    if spec.training.method is TrainingMethod.LORA:
        adapter = model_adapter(spec, name, namespace, model_path)
        files[MODEL_ADAPTER_FILE] = yaml.safe_dump(adapter, sort_keys=False)
        description |= {"baseModel": base_model_path(spec, str(base) if base else None),
                        "servedModelName": served_model_name(spec), "adapterName": name,
                        "loraRank": spec.training.lora.r}
    files[SERVING_JSON_FILE] = description
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
        (staging / VLLM_SCRIPT_FILE).chmod(0o755)
    return target
