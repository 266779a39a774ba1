"""GPU paths: run only where a CUDA GPU (and, for vLLM, the vllm package) is present; skipped here otherwise
with the reason shown. CI machines have no GPU, so these run on GPU machines only."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from selfguide.engine.backends.base import SamplingParams
from selfguide.engine.models import locate
from selfguide.spec import Backend, Dtype, ModelSpec
from selfguide.spec.generation import GenerationSpec

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
needs_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM (pip install 'selfguide[vllm]')")
needs_two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two or more CUDA GPUs")

PROMPTS = ["Name a primary colour.", "What is two plus two? Answer with a number only."]


def _greedy(backend) -> list[str]:
    rendered = [backend.render_chat([{"role": "user", "content": p}]) for p in PROMPTS]
    return [c[0].text for c in backend.generate(rendered, SamplingParams(temperature=0.0, max_tokens=8))]


@needs_gpu
@pytest.mark.slow
def test_transformers_backend_uses_bf16_and_sizes_batches_from_memory() -> None:
    from selfguide.engine.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(locate(ModelSpec()), Dtype.AUTO)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert next(backend.model.parameters()).dtype == expected
    assert backend._sequences_per_batch(128, SamplingParams(max_tokens=128)) > 16
    assert all(_greedy(backend))


@needs_gpu
@needs_vllm
@pytest.mark.slow
def test_vllm_backend_matches_transformers_greedy() -> None:
    from selfguide.engine.backends import open_backend

    vllm = open_backend(ModelSpec(dtype=Dtype.FLOAT32), GenerationSpec(backend=Backend.VLLM), None)
    try:
        vllm_out = _greedy(vllm)
        sampled = vllm.generate(["Hello"], SamplingParams(n=3, best_of=6, temperature=0.8, top_k=10, max_tokens=8))
    finally:
        vllm.close()
    hf_out = _greedy(open_backend(ModelSpec(dtype=Dtype.FLOAT32), GenerationSpec(backend=Backend.TRANSFORMERS), 8))
    assert [o.split()[:2] for o in vllm_out] == [o.split()[:2] for o in hf_out]
    assert len(sampled[0]) == 3 and sampled[0][0].logprob >= sampled[0][-1].logprob


@needs_gpu
@needs_vllm
@pytest.mark.slow
def test_vllm_seeds_each_prompt_and_frees_the_gpu_on_close() -> None:
    from selfguide.engine.backends import open_backend

    free_before, _ = torch.cuda.mem_get_info()
    backend = open_backend(ModelSpec(), GenerationSpec(backend=Backend.VLLM), None)
    try:
        prompt = backend.render_chat([{"role": "user", "content": "Write one random word."}])
        params = SamplingParams(temperature=1.0, top_k=0, max_tokens=16, seed=5)
        first, second = backend.generate([prompt, prompt], params)
        again = backend.generate([prompt, prompt], params)
        too_long = backend.generate(["word " * (backend.max_model_len + 1)], params)
    finally:
        backend.close()
    assert first != second  # identical prompts, a seed each
    assert again == [first, second]
    assert too_long == [[]] and backend.throughput.skipped_prompts == 1
    free_after, _ = torch.cuda.mem_get_info()
    assert free_after > free_before - 2 * 2**30  # the engine's memory is back (it reserves 90% of the GPU)


@needs_two_gpus
@pytest.mark.slow
def test_training_spans_every_visible_gpu() -> None:
    from selfguide.stages.train.stage import training_processes

    assert training_processes() == torch.cuda.device_count()
