"""The one interface every generation engine implements: a batch of prompts in, n samples per prompt out."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

EXCEEDS_CONTEXT = "prompt_exceeds_context"
"""Why a backend skipped a prompt: with at least one token to generate it does not fit the model's context
window (`max_model_len`). The prompt's completion list is empty; the caller records the reason."""


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings, named as in vLLM's SamplingParams and mapped one-to-one by every backend."""

    n: int = 1
    """Completions returned per prompt."""
    best_of: int | None = None
    """Sample this many and return the `n` with the highest log-probability (None: sample exactly `n`)."""
    temperature: float = 1.0
    """0 means greedy decoding."""
    top_k: int = 0
    """0 disables top-k."""
    top_p: float = 1.0
    max_tokens: int = 256
    min_tokens: int = 0
    """Generate at least this many tokens before an end-of-sequence may end a completion (benchmarks)."""
    stop: tuple[str, ...] = ()
    """Cut a completion at the first of these strings (the string itself is dropped)."""
    seed: int | None = None
    max_chars: int | None = None
    """End a completion once `text_exceeds` says it is longer than this many characters however it continues:
    for callers that discard longer texts anyway (generated inputs above the length filter's band). The
    transformers backend stops decoding it; vLLM has no such limit and decodes on to `max_tokens` (a finished
    row frees its slot there, so one long row does not hold up the others)."""

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def samples(self) -> int:
        """How many completions are drawn per prompt before the best `n` are kept."""
        return max(self.n, self.best_of or self.n)


@dataclass(frozen=True)
class Completion:
    text: str
    logprob: float = 0.0
    """Sum of the token log-probabilities of the completion (ranking key for `best_of`)."""
    tokens: int = 0


@dataclass
class Throughput:
    """What a backend did, for summaries and benchmarks."""

    prompts: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    skipped_prompts: int = 0
    """Prompts not run because they exceed the model's context window (see `EXCEEDS_CONTEXT`)."""

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0


Messages = Sequence[dict[str, str]]
"""Chat messages: `{"role": "system" | "user" | "assistant", "content": ...}`."""


class GenerationBackend(Protocol):
    """A loaded model that renders chat prompts and samples completions."""

    throughput: Throughput

    def render_chat(self, messages: Messages, response_prefix: str = "") -> str:
        """The model's own chat template applied to `messages`, ready for the assistant's turn,
        followed by `response_prefix` (the start of the assistant's answer)."""

    def count_tokens(self, text: str) -> int:
        """Tokens in `text` as this model tokenizes it."""

    def generate(self, prompts: Sequence[str], params: SamplingParams, desc: str = "") -> list[list[Completion]]:
        """`params.n` completions for each prompt, in prompt order; none for a prompt the backend skipped
        (`EXCEEDS_CONTEXT`)."""

    def score_answers(self, prompts: Sequence[str], answers: Sequence[str], desc: str = "") -> list[list[float]]:
        """For each prompt, the log-probability of each answer as the model's whole reply (its tokens, then the
        end of the turn); an empty list for a prompt the backend skipped (`EXCEEDS_CONTEXT`)."""

    def adapter_disabled(self) -> contextlib.AbstractContextManager[None]:
        """Inside this block, generate with the base model even when an adapter is loaded."""

    def close(self) -> None:
        """Free the model (GPU memory)."""


class AdapterSwitch:
    """`adapter_disabled` for a backend that decides per request whether the adapter answers (`use_adapter`)."""

    use_adapter: bool

    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """The base model answers inside this block."""
        previous, self.use_adapter = self.use_adapter, False
        try:
            yield
        finally:
            self.use_adapter = previous


def select_best(completions: list[Completion], n: int) -> list[Completion]:
    """The `n` completions with the highest log-probability, in that order (stable on ties)."""
    return sorted(completions, key=lambda c: -c.logprob)[:n]


def keep_n(completions: list[Completion], n: int) -> list[Completion]:
    """Exactly `n` completions: the most likely of more draws, or one greedy answer repeated."""
    kept = select_best(completions, n) if len(completions) > n else completions
    return kept if len(kept) == n else kept * n


def text_exceeds(text: str, params: SamplingParams) -> bool:
    """Whether the completion so far, `text`, is past `params.max_chars`: longer, stripped, once cut at a stop
    string and without its last characters where one may have begun, so no continuation brings it back under."""
    if params.max_chars is None:
        return False
    reach = max((len(s) - 1 for s in params.stop), default=0)
    return len(cut_at_stop(text, params.stop)[: max(0, len(text) - reach)].strip()) > params.max_chars


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the first occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        index = text.find(s)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]
