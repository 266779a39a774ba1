"""The mapping of sampling settings onto `/v1/completions` (the server itself: tests/engine/test_openai_endpoint.py)."""

from __future__ import annotations

import openai

from selfguide.engine.backends.base import SamplingParams
from selfguide.engine.backends.openai_backend import MAX_STOP_STRINGS, completion_params


def test_sampling_maps_onto_the_completions_api_with_vllms_extensions_in_the_body():
    params = SamplingParams(n=2, best_of=5, temperature=0.7, top_k=40, top_p=0.9, max_tokens=64, min_tokens=3,
                            stop=("a", "b", "c", "d", "e"), seed=9)
    mapped = completion_params(params, max_tokens=50, seed=123)
    assert mapped["n"] == 5 and mapped["logprobs"] == 0  # best-of: every sample with its log-probability
    assert mapped["max_tokens"] == 50 and mapped["seed"] == 123 and mapped["top_p"] == 0.9
    assert mapped["stop"] == ["a", "b", "c", "d"] and len(mapped["stop"]) == MAX_STOP_STRINGS
    assert mapped["extra_body"] == {"top_k": 40, "min_tokens": 3}


def test_greedy_decoding_asks_for_one_completion_without_sampling_settings():
    mapped = completion_params(SamplingParams(n=3, temperature=0.0, top_k=40), max_tokens=8, seed=None)
    assert mapped["n"] == 1 and mapped["top_p"] == 1.0 and mapped["extra_body"] is None
    assert mapped["seed"] is openai.omit and mapped["logprobs"] is openai.omit and mapped["stop"] is openai.omit
