"""Generation with Hugging Face transformers, on CPU or GPU.

Each prompt is prefilled once: its `n` samples copy the prompt's KV cache instead of recomputing it. The longest
token prefix common to all prompts of a call (the few-shot chat of annotation and evaluation) is prefilled once
and its cache copied into every batch. Sequences leave the batch as soon as they end (end of sequence or a stop
string), so finished samples cost no more compute. Log-probabilities of the chosen tokens are gathered step by
step; no per-step score tensors are kept.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    DynamicCache,
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    StopStringCriteria,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from selfguide.engine.backends.base import (
    Completion,
    SamplingParams,
    Throughput,
    cut_at_stop,
    keep_n,
    text_exceeds,
)
from selfguide.engine.backends.chat import ChatRendering, answer_ids, end_of_turn, load_tokenizer
from selfguide.engine.backends.kv_cache import RoomyLayer, join_rows, pad_after_prefix, roomy_cache
from selfguide.engine.backends.mixed_precision import compute_linear_layers_in_bfloat16
from selfguide.engine.batching import CPU_BATCH, batch_for_memory
from selfguide.engine.devices import resolve_device, resolve_dtype
from selfguide.engine.models import ModelLocation
from selfguide.spec.model import Dtype

log = logging.getLogger(__name__)

MIN_SHARED_PREFIX = 16
"""A common prompt prefix shorter than this (in tokens) is not prefilled on its own."""
PREFILL_GROUP_RATIO = 0.75
"""A prompt joins the prefill group of longer prompts when its own tokens are at least this share of the
group's longest (so padding costs at most a quarter of a group's prefill)."""


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens that all of (two or more) `sequences` start with, leaving each at least one token of its own."""
    if len(sequences) < 2:
        return 0
    length = 0
    for column in zip(*sequences):
        if any(token != column[0] for token in column):
            break
        length += 1
    return min(length, min(map(len, sequences)) - 1)


@dataclass(frozen=True)
class _Prefix:
    """A prefilled prompt prefix: its tokens, whether the adapter was on, its KV cache (one row)."""

    tokens: list[int]
    adapter_active: bool
    cache: DynamicCache


class TransformersBackend(ChatRendering):
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
        if dtype is Dtype.MIXED:
            compute_linear_layers_in_bfloat16(model)
        if adapter:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.eval()
        self.has_adapter = adapter is not None
        self.adapter_active = self.has_adapter
        self.throughput = Throughput()
        self._stops: dict[tuple[str, ...], StopStringCriteria] = {}
        self._prefix: _Prefix | None = None
        # prefill groups are joined layer by layer: only where every layer is a plain (roomy) attention cache
        self._joinable = all(isinstance(layer, RoomyLayer) for layer in roomy_cache(model.config).layers)

    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """Generate with the base model alone inside this block (no second model load)."""
        if not self.has_adapter:
            yield
            return
        with self.model.disable_adapter():
            self.adapter_active = False
            try:
                yield
            finally:
                self.adapter_active = True

    def generate(self, prompts: Sequence[str], params: SamplingParams, desc: str = "") -> list[list[Completion]]:
        if not prompts:
            return []
        if params.seed is not None:
            torch.manual_seed(params.seed)
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        prefix = self._shared_prefix(encoded)
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))  # similar lengths share a batch
        draws = 1 if params.greedy else params.samples
        per_batch = max(1, self._sequences_per_batch(len(encoded[order[0]]), params) // draws)
        sampler = _Sampler(params, self._eos, self._stop_criteria(params.stop), self.device, self.tokenizer.decode)
        results: list[list[Completion]] = [[] for _ in prompts]
        started = time.perf_counter()
        with tqdm(total=len(prompts), desc=desc or "generating", unit="prompt", leave=False) as bar:
            first = 0
            while first < len(order):
                chunk = order[first : first + per_batch]
                try:
                    generated = self._generate_batch([encoded[i] for i in chunk], prefix, sampler, draws)
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

    @property
    def _eos(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        return _as_list(eos if eos is not None else self.tokenizer.eos_token_id)

    def _stop_criteria(self, stop: tuple[str, ...]) -> StopStringCriteria | None:
        """transformers' stop-string matcher, built once per set of strings (building it takes ~0.5 s)."""
        if not stop:
            return None
        if stop not in self._stops:
            self._stops[stop] = StopStringCriteria(self.tokenizer, list(stop))
        return self._stops[stop]

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache
                 ) -> torch.Tensor:
        """Next-token logits (float32) after `ids`; `cache` grows by their keys and values."""
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                         use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].float()

    def _shared_prefix(self, encoded: list[list[int]]) -> DynamicCache | None:
        """The KV cache (one row) of the prefix that all of a call's prompts share, or None when it is too short
        to pay. A stage hands its prompts over in chunks (for progress) that share one few-shot prefix: the last
        prefix is kept and reused, cut to the part the new prompts share, so it is computed once per stage."""
        shared = shared_prefix_length(encoded) if len(encoded) > 1 else len(encoded[0]) - 1
        tokens = encoded[0][:shared]
        kept = self._prefix
        if kept is not None and kept.adapter_active == self.adapter_active:
            common = next((i for i, (a, b) in enumerate(zip(kept.tokens, tokens)) if a != b),
                          min(len(kept.tokens), len(tokens)))
            # reused when it covers what these prompts share, up to a few tokens each computes on its own
            if common >= MIN_SHARED_PREFIX and (len(encoded) == 1 or shared - common < MIN_SHARED_PREFIX):
                if common < len(kept.tokens):
                    cache = copy.deepcopy(kept.cache)
                    cache.crop(common - len(kept.tokens))  # a negative count: the tokens to remove
                    self._prefix = kept = _Prefix(kept.tokens[:common], kept.adapter_active, cache)
                log.debug("%d prompts reuse a cached prefix of %d tokens", len(encoded), common)
                return kept.cache
        if len(encoded) < 2 or shared < MIN_SHARED_PREFIX:
            return None
        self._prefix = _Prefix(tokens, self.adapter_active, self._prefill_prefix(tokens))
        log.debug("%d prompts share %d prefix tokens, prefilled once", len(encoded), shared)
        return self._prefix.cache

    @torch.inference_mode()
    def _prefill_prefix(self, tokens: list[int]) -> DynamicCache:
        cache = roomy_cache(self.model.config)
        ids = torch.tensor([tokens], device=self.device)
        self._forward(ids, torch.ones_like(ids), torch.arange(len(tokens), device=self.device)[None], cache)
        return cache

    def _prefill(self, batch: list[list[int]], prefix: DynamicCache | None
                 ) -> tuple[torch.Tensor, DynamicCache, torch.Tensor, torch.Tensor]:
        """Prefill `batch` (prompts longest first) after `prefix`: next-token logits, the batch's cache, its
        attention mask and positions. Prompts of very different lengths are prefilled in groups of similar
        length, so that padding costs no compute, and their caches are then joined for decoding."""
        skip = prefix.get_seq_length() if prefix is not None else 0
        groups: list[list[list[int]]] = []
        for prompt in batch:
            if groups and (not self._joinable
                           or len(prompt) - skip >= PREFILL_GROUP_RATIO * (len(groups[-1][0]) - skip)):
                groups[-1].append(prompt)
            else:
                groups.append([prompt])
        parts = [self._prefill_padded(group, prefix, skip) for group in groups]
        if len(parts) == 1:
            return parts[0]
        width = max(part[2].shape[1] for part in parts) - skip
        cache = join_rows([part[1] for part in parts], self.model.config, skip, width)
        mask = torch.cat([pad_after_prefix(part[2], skip, width, dim=1) for part in parts])
        return (torch.cat([part[0] for part in parts]), cache, mask, torch.cat([part[3] for part in parts]))

    def _prefill_padded(self, batch: list[list[int]], prefix: DynamicCache | None, skip: int
                        ) -> tuple[torch.Tensor, DynamicCache, torch.Tensor, torch.Tensor]:
        """One forward pass over `batch`, left-padded between the prefix and each prompt's own tokens (masked)."""
        cache = roomy_cache(self.model.config) if prefix is None else copy.deepcopy(prefix)
        cache.batch_repeat_interleave(len(batch))
        width = max(map(len, batch)) - skip
        lengths = torch.tensor([len(p) - skip for p in batch], device=self.device)
        own = (torch.arange(width, device=self.device) >= width - lengths[:, None]).long()
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p) + skip) + p[skip:] for p in batch], device=self.device)
        mask = torch.cat([own.new_ones(len(batch), skip), own], dim=1)
        positions = (skip + own.cumsum(-1) - 1).clamp(min=0)
        return self._forward(ids, mask, positions, cache), cache, mask, positions[:, -1:]

    @torch.inference_mode()
    def _generate_batch(self, batch: list[list[int]], prefix: DynamicCache | None, sampler: _Sampler, draws: int
                        ) -> list[list[Completion]]:
        """`draws` completions for each prompt of `batch`: one prefill per prompt, after the cached `prefix`."""
        logits, cache, mask, positions = self._prefill(batch, prefix)
        pad = self.tokenizer.pad_token_id
        # the samples of a prompt share its prefill: copy its cache rows instead of recomputing them
        cache.batch_repeat_interleave(draws)
        logits, mask = logits.repeat_interleave(draws, 0), mask.repeat_interleave(draws, 0)
        position = positions.repeat_interleave(draws, 0)
        history = sampler.history([p for p in batch for _ in range(draws)], pad)
        live = torch.arange(len(batch) * draws, device=self.device)  # row of each sequence still decoding
        tokens: list[list[int]] = [[] for _ in range(len(batch) * draws)]
        logprobs = torch.zeros(len(batch) * draws, device=self.device)
        for step in range(sampler.params.max_tokens):
            chosen, logprob = sampler.choose(history, logits)
            logprobs[live] += logprob
            history = torch.cat([history, chosen[:, None]], dim=1)
            for row, token in zip(live.tolist(), chosen.tolist()):
                tokens[row].append(token)
            done = sampler.done(history, chosen)
            if step + 1 == sampler.params.max_tokens or bool(done.all()):
                break
            if bool(done.any()):  # finished sequences leave the batch
                keep = (~done).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                live, chosen, history, mask, position = (t[keep] for t in (live, chosen, history, mask, position))
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
            position = position + 1
            logits = self._forward(chosen[:, None], mask, position, cache)
        completions: list[list[Completion]] = [[] for _ in batch]
        for row, row_tokens in enumerate(tokens):
            text = str(self.tokenizer.decode(row_tokens, skip_special_tokens=True))
            self.throughput.generated_tokens += len(row_tokens)
            completions[row // draws].append(
                Completion(cut_at_stop(text, sampler.params.stop), float(logprobs[row]), len(row_tokens)))
        return completions

    def score_answers(self, prompts: Sequence[str], answers: Sequence[str], desc: str = "") -> list[list[float]]:
        """Each answer's log-probability as the whole reply to each prompt: the prefix all prompts share computed
        once, then (prompt, answer) pairs in batches over copies of its cache, each row the prompt's own tokens
        and the answer, left-padded so that every answer ends the row (the LM head runs only where an answer's
        tokens are predicted)."""
        if not prompts or not answers:
            return [[] for _ in prompts]
        started = time.perf_counter()
        encoded = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        end = end_of_turn(self.tokenizer, self._eos)
        tails = [answer_ids(self.tokenizer, answer, end) for answer in answers]
        prefix = self._shared_prefix(encoded)
        pairs = [(ids, tail) for ids in encoded for tail in tails]
        # whole prompts per batch, so that progress counts prompts exactly
        per_batch = self._sequences_per_batch(max(map(len, encoded)), SamplingParams())
        rows = max(1, per_batch // len(tails)) * len(tails)
        flat: list[float] = []
        with tqdm(total=len(prompts), desc=desc or "scoring", unit="prompt", leave=False) as bar:
            for first in range(0, len(pairs), rows):
                batch = pairs[first:first + rows]
                flat += self._score_pairs(batch, prefix)
                bar.update(len(batch) // len(tails))
        self.throughput.prompts += len(prompts)
        self.throughput.prompt_tokens += sum(map(len, encoded))
        self.throughput.seconds += time.perf_counter() - started
        return [flat[i:i + len(tails)] for i in range(0, len(flat), len(tails))]

    @torch.inference_mode()
    def _score_pairs(self, pairs: list[tuple[list[int], list[int]]], prefix: DynamicCache | None) -> list[float]:
        """The log-probability of each pair's answer tokens after its prompt tokens, in one forward pass."""
        skip = prefix.get_seq_length() if prefix is not None else 0
        rows = [ids[skip:] + tail for ids, tail in pairs]
        width = max(map(len, rows))
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self._eos[0]
        inputs = torch.tensor([[pad] * (width - len(row)) + row for row in rows], device=self.device)
        own = (torch.arange(width, device=self.device) >= torch.tensor(
            [width - len(row) for row in rows], device=self.device)[:, None]).long()
        mask = torch.cat([own.new_ones(len(rows), skip), own], dim=1)
        # each row's tokens take the positions after the prefix as if unpadded (pads get any position: masked)
        positions = (skip + (own.cumsum(1) - 1).clamp(min=0))
        cache = roomy_cache(self.model.config) if prefix is None else copy.deepcopy(prefix)
        if prefix is not None:
            cache.batch_repeat_interleave(len(rows))
        keep = max(len(tail) for _, tail in pairs) + 1  # the positions that predict some answer token
        logits = self.model(input_ids=inputs, attention_mask=mask, position_ids=positions, past_key_values=cache,
                            use_cache=True, logits_to_keep=keep).logits.float().log_softmax(-1)
        scores = []
        for row, (_, tail) in enumerate(pairs):
            # the answer's tokens end the row; token j of it is predicted by the position before it
            start = keep - 1 - len(tail)
            scores.append(float(sum(logits[row, start + j, token] for j, token in enumerate(tail))))
        return scores

    def close(self) -> None:
        self._prefix = None
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _as_list(value: int | list[int] | None) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)


class _Sampler:
    """Chooses next tokens from the distribution `generate` would (the same logits processors, in the same
    order) and says which sequences have ended."""

    def __init__(self, params: SamplingParams, eos: list[int], stop: StopStringCriteria | None,
                 device: torch.device, decode: Callable[..., str | list[str]]) -> None:
        self.params = params
        self.decode = decode
        self.eos = torch.tensor(eos, device=device)
        self.stop = stop
        self.context = max((len(s) for s in params.stop), default=0)
        """Prompt tokens kept before the completion, so that a stop string may start in the prompt."""
        self.processors = LogitsProcessorList()
        if params.min_tokens:
            self.processors.append(MinNewTokensLengthLogitsProcessor(self.context, params.min_tokens, eos, str(device)))
        if not params.greedy:
            if params.temperature != 1.0:
                self.processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_k:
                self.processors.append(TopKLogitsWarper(params.top_k))
            if params.top_p < 1.0:
                self.processors.append(TopPLogitsWarper(params.top_p))

    def history(self, prompts: list[list[int]], pad: int) -> torch.Tensor:
        """The last `context` tokens of each prompt (left-padded): what the processors and stop strings see."""
        rows = [([pad] * self.context + p)[len(p):] for p in prompts]
        return torch.tensor(rows, dtype=torch.long, device=self.eos.device).reshape(len(prompts), self.context)

    def choose(self, history: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The next token of each sequence and its log-probability under the processed distribution."""
        scores = self.processors(history, logits)  # type: ignore[arg-type]  # a LongTensor at run time
        if self.params.greedy:
            chosen = scores.argmax(dim=-1)
            return chosen, scores.log_softmax(dim=-1).gather(1, chosen[:, None]).squeeze(1)
        # top-k / top-p left a few tokens drawable (the rest score -inf): draw among those alone, the same
        # distribution at a fraction of the cost of drawing over the whole vocabulary
        drawable = int(torch.isfinite(scores).sum(dim=-1).max())
        candidates, ids = scores.topk(drawable, dim=-1) if drawable < scores.shape[-1] // 2 else (scores, None)
        logprobs = candidates.log_softmax(dim=-1)
        pick = torch.multinomial(logprobs.exp(), num_samples=1)
        chosen = pick if ids is None else ids.gather(1, pick)
        return chosen.squeeze(1), logprobs.gather(1, pick).squeeze(1)

    def done(self, history: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Which sequences just ended: end of sequence, a stop string completed, or past `max_chars`."""
        ended = torch.isin(chosen, self.eos)
        if self.stop is not None:
            ended |= self.stop(history, None)
        if self.params.max_chars is not None:
            texts = [str(self.decode(row, skip_special_tokens=True)) for row in history[:, self.context:].tolist()]
            ended |= torch.tensor([text_exceeds(text, self.params) for text in texts], device=ended.device)
        return ended
