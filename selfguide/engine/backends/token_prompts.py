"""Prompts as token ids, the form both serving engines take (vLLM in process and over HTTP): the ids the prompt
budget counted with, a seed per prompt, and the prompts that do not fit the context window set aside."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from selfguide.engine.backends.base import SamplingParams
from selfguide.engine.backends.chat import encode

log = logging.getLogger(__name__)


def prompt_seed(seed: int, index: int) -> int:
    """The seed of prompt `index` in a batch drawn with `seed`.

    vLLM seeds each request, so one seed for the whole batch would give identical prompts identical samples.
    A hash rather than `seed + index`, so the next batch (`seed + 1`) shares no seeds with this one; 62 bits,
    because vLLM seeds the n samples of a request with `seed + i` in an int64."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 2


@dataclass(frozen=True)
class Request:
    """One prompt as a serving engine receives it."""

    index: int
    """Position in the caller's prompt list."""
    token_ids: list[int]
    seed: int | None


def plan_requests(
    tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], params: SamplingParams, max_model_len: int,
    desc: str = "",
) -> tuple[list[Request], list[int]]:
    """Requests for the prompts that fit the context window, and the indices of those that do not (logged, for
    the work `desc` names).

    The token ids come from the tokenizer call the prompt budget counted with (no special tokens added: the
    chat template wrote its own BOS). vLLM rejects a prompt that leaves no room for one generated token."""
    requests: list[Request] = []
    skipped: list[int] = []
    for index, prompt in enumerate(prompts):
        ids = encode(tokenizer, prompt)
        if not ids or len(ids) >= max_model_len:
            skipped.append(index)
            continue
        seed = None if params.seed is None else prompt_seed(params.seed, index)
        requests.append(Request(index, ids, seed))
    if skipped:
        log.warning("%s: %d prompt(s) skipped, longer than the model's context of %d tokens",
                    desc or "generating", len(skipped), max_model_len)
    return requests, skipped
