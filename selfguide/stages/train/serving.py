"""What the train stage adds to a published job's `<workdir>/serving/`: a vLLM start script for the trained model
and, for a LoRA adapter, the AIBrix ModelAdapter and the facts as `serving.json` (the train declaration's
`serving` hook)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from selfguide.contract.environment import pvc_local_path
from selfguide.contract.layout import (
    MODEL_ADAPTER_FILE,
    SERVING_JSON_FILE,
    VLLM_SCRIPT_FILE,
    trained_model_dir,
)
from selfguide.contract.serving import (
    base_model_path,
    model_adapter,
    served_model_name,
    shell_script,
    vllm_command,
)
from selfguide.spec import SelfGuideJobSpec, TrainingMethod
from selfguide.spec.uris import is_pvc


def serving_files(spec: SelfGuideJobSpec, workdir: Path, name: str, namespace: str) -> dict[str, Any]:
    """The serving files by name (text, or JSON-able for serving.json)."""
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
