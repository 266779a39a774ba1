"""Generation with vLLM's offline engine (GPU): continuous batching and prefix caching, so the long few-shot
prefix shared by every annotation prompt is computed once. Imported only when this backend is chosen."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from selfguide.engine.backends.base import (
    Completion,
    Messages,
    SamplingParams,
    Throughput,
    cut_at_stop,
    keep_n,
)
from selfguide.engine.backends.chat import count_tokens, render_chat
from selfguide.engine.models import ModelLocation
from selfguide.spec.model import Dtype


def to_vllm_sampling(params: SamplingParams) -> dict[str, Any]:
    """Keyword arguments of `vllm.SamplingParams` equivalent to `params`.

    vLLM's V1 engine has no `best_of`: the backend asks for `params.samples` completions with their
    log-probabilities and keeps the best `n` itself, exactly as the transformers backend does."""
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


def _adapter_rank(adapter: str) -> int:
    """The LoRA rank vLLM must reserve for `adapter` (it rejects adapters above `max_lora_rank`, 16 by default)."""
    config = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    return max(16, int(config.get("r", 16)))


class VllmBackend:
    def __init__(
        self,
        location: ModelLocation,
        dtype: Dtype = Dtype.AUTO,
        tensor_parallel_size: int = 1,
        adapter: str | None = None,
        trust_remote_code: bool = False,
        seed: int = 0,
    ) -> None:
        from vllm import LLM

        lora = {"enable_lora": True, "max_lora_rank": _adapter_rank(adapter)} if adapter else {}
        self.llm = LLM(
            model=location.path,
            revision=location.revision,
            dtype=dtype.value,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=True,
            **lora,
            trust_remote_code=trust_remote_code,
            seed=seed,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.adapter = adapter
        self.use_adapter = adapter is not None
        self.throughput = Throughput()

    def render_chat(self, messages: Messages, response_prefix: str = "") -> str:
        return render_chat(self.tokenizer, messages, response_prefix)

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)

    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """Generate with the base model alone inside this block (the engine serves both)."""
        previous, self.use_adapter = self.use_adapter, False
        try:
            yield
        finally:
            self.use_adapter = previous

    def generate(self, prompts: Sequence[str], params: SamplingParams, desc: str = "") -> list[list[Completion]]:
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.lora.request import LoRARequest

        started = time.perf_counter()
        lora = LoRARequest("adapter", 1, self.adapter) if self.use_adapter and self.adapter else None
        outputs = self.llm.generate(list(prompts), VllmSamplingParams(**to_vllm_sampling(params)),
                                    lora_request=lora, use_tqdm=True)
        results: list[list[Completion]] = []
        for output in outputs:
            completions = [
                Completion(cut_at_stop(o.text, params.stop), o.cumulative_logprob or 0.0, len(o.token_ids))
                for o in output.outputs
            ]
            self.throughput.generated_tokens += sum(c.tokens for c in completions)
            self.throughput.prompt_tokens += len(output.prompt_token_ids or [])
            results.append(keep_n(completions, params.n))
        self.throughput.prompts += len(prompts)
        self.throughput.seconds += time.perf_counter() - started
        return results

    def close(self) -> None:
        del self.llm
