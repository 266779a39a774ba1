"""Generation with Hugging Face transformers: real batching (left padding, many prompts per forward pass,
n samples per prompt), on CPU or GPU."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, GenerationConfig

from selfguide.engine.backends.base import (
    Completion,
    Messages,
    SamplingParams,
    Throughput,
    cut_at_stop,
    keep_n,
)
from selfguide.engine.backends.chat import count_tokens, load_tokenizer, render_chat
from selfguide.engine.batching import CPU_BATCH, batch_for_memory
from selfguide.engine.devices import resolve_device, resolve_dtype
from selfguide.engine.models import ModelLocation
from selfguide.spec.model import Dtype

log = logging.getLogger(__name__)


class TransformersBackend:
    """A model loaded once and used for every batch of a stage."""

    def __init__(
        self,
        location: ModelLocation,
        dtype: Dtype = Dtype.AUTO,
        batch_size: int | None = None,
        device: str | None = None,
        adapter: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(location, trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            location.path,
            revision=location.revision,
            dtype=resolve_dtype(dtype, self.device),
            trust_remote_code=trust_remote_code,
        ).to(self.device)  # type: ignore[arg-type]  # transformers types `to` badly
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.eval()
        self.has_adapter = adapter is not None
        self.throughput = Throughput()

    def render_chat(self, messages: Messages, response_prefix: str = "") -> str:
        return render_chat(self.tokenizer, messages, response_prefix)

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)

    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """Generate with the base model alone inside this block (no second model load)."""
        if not self.has_adapter:
            yield
            return
        with self.model.disable_adapter():
            yield

    def generate(self, prompts: Sequence[str], params: SamplingParams, desc: str = "") -> list[list[Completion]]:
        if not prompts:
            return []
        if params.seed is not None:
            torch.manual_seed(params.seed)
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # similar lengths share a batch
        draws = 1 if params.greedy else params.samples
        per_batch = max(1, self._sequences_per_batch(len(encoded[order[0]]), params) // draws)
        results: list[list[Completion]] = [[] for _ in prompts]
        started = time.perf_counter()
        with tqdm(total=len(prompts), desc=desc or "generating", unit="prompt", leave=False) as bar:
            first = 0
            while first < len(order):
                chunk = order[first : first + per_batch]
                try:
                    generated = self._generate_batch([encoded[i] for i in chunk], params, draws)
                except torch.OutOfMemoryError:
                    if per_batch == 1:
                        raise
                    per_batch //= 2  # the memory estimate was optimistic: retry this chunk smaller
                    log.warning("out of GPU memory; retrying with %d prompts per batch", per_batch)
                    torch.cuda.empty_cache()
                    continue
                for index, completions in zip(chunk, generated):
                    results[index] = keep_n(completions, params.n)
                bar.update(len(chunk))
                first += len(chunk)
        self.throughput.prompts += len(prompts)
        self.throughput.prompt_tokens += sum(map(len, encoded))
        self.throughput.seconds += time.perf_counter() - started
        return results

    def _sequences_per_batch(self, longest_prompt: int, params: SamplingParams) -> int:
        """The configured batch size, else what free GPU memory holds (a fixed size on CPU)."""
        if self.batch_size is not None:
            return self.batch_size
        if self.device.type != "cuda":
            return CPU_BATCH
        free, _ = torch.cuda.mem_get_info(self.device)
        dtype_bytes = next(self.model.parameters()).element_size()
        return batch_for_memory(free, self.model.config, dtype_bytes, longest_prompt + params.max_tokens)

    def _generation_config(self, params: SamplingParams, draws: int) -> GenerationConfig:
        defaults = self.model.generation_config
        sampling = {} if params.greedy else {
            "temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p,
        }
        return GenerationConfig(
            do_sample=not params.greedy,
            num_return_sequences=draws,
            max_new_tokens=params.max_tokens,
            min_new_tokens=params.min_tokens or None,
            stop_strings=list(params.stop) or None,
            eos_token_id=defaults.eos_token_id if defaults.eos_token_id is not None else self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_scores=draws > params.n,
            **sampling,
        )

    @torch.inference_mode()
    def _generate_batch(self, batch: list[list[int]], params: SamplingParams, draws: int) -> list[list[Completion]]:
        padded = self.tokenizer.pad({"input_ids": batch}, return_tensors="pt").to(self.device)
        config = self._generation_config(params, draws)
        out = self.model.generate(**padded, generation_config=config, tokenizer=self.tokenizer)
        new_tokens = out.sequences[:, padded["input_ids"].shape[1] :]
        logprobs = None
        if config.output_scores:
            scores = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
            logprobs = scores.masked_fill(~torch.isfinite(scores), 0.0)
        eos = set(_as_list(config.eos_token_id)) | {self.tokenizer.pad_token_id}
        completions: list[list[Completion]] = [[] for _ in batch]
        for row, tokens in enumerate(new_tokens.tolist()):
            length = next((i + 1 for i, t in enumerate(tokens) if t in eos), len(tokens))
            text = str(self.tokenizer.decode(tokens[:length], skip_special_tokens=True))
            logprob = float(logprobs[row, :length].sum()) if logprobs is not None else 0.0
            self.throughput.generated_tokens += length
            completions[row // draws].append(Completion(cut_at_stop(text, params.stop), logprob, length))
        return completions

    def close(self) -> None:
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _as_list(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)
