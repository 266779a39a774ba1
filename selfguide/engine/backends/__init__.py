"""Generation backends behind one interface (`GenerationBackend`); heavy engines load only when chosen."""

from __future__ import annotations

import importlib.util

from selfguide.contract.errors import PermanentError
from selfguide.engine.backends.base import Completion, GenerationBackend, SamplingParams, Throughput
from selfguide.engine.models import locate
from selfguide.spec.generation import Backend
from selfguide.spec.model import ModelSpec

__all__ = ["Completion", "GenerationBackend", "SamplingParams", "Throughput", "choose_backend", "open_backend"]


class BackendUnavailable(PermanentError):
    """The chosen backend cannot run here (vLLM not installed, or no GPU)."""


def choose_backend(requested: Backend) -> Backend:
    """`auto` is vLLM when it is installed and a GPU is visible, transformers otherwise."""
    import torch

    has_vllm = importlib.util.find_spec("vllm") is not None
    if requested is Backend.AUTO:
        return Backend.VLLM if has_vllm and torch.cuda.is_available() else Backend.TRANSFORMERS
    if requested is Backend.VLLM and not has_vllm:
        raise BackendUnavailable("backend vllm: vLLM is not installed (pip install 'selfguide[vllm]')")
    if requested is Backend.VLLM and not torch.cuda.is_available():
        raise BackendUnavailable("backend vllm: no CUDA GPU is visible; use backend transformers")
    return requested


def open_backend(
    model: ModelSpec, backend: Backend, batch_size: int | None, adapter: str | None = None, seed: int = 0,
    tensor_parallel_size: int = 1,
) -> GenerationBackend:
    """Load the model once into the chosen backend; vLLM spans `tensor_parallel_size` GPUs."""
    location = locate(model)
    if choose_backend(backend) is Backend.VLLM:
        import torch

        from selfguide.engine.backends.vllm_backend import VllmBackend

        visible = torch.cuda.device_count()
        if tensor_parallel_size > visible:
            raise BackendUnavailable(f"generation.tensorParallelSize {tensor_parallel_size}: "
                                     f"only {visible} GPU(s) are visible to this pod")
        return VllmBackend.load(location, model.dtype, tensor_parallel_size, adapter,
                                model.trust_remote_code, seed)
    from selfguide.engine.backends.transformers_backend import TransformersBackend

    return TransformersBackend(location, model.dtype, batch_size, adapter=adapter,
                               trust_remote_code=model.trust_remote_code)
