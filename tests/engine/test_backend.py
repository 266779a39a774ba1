"""The transformers generation backend on the real bundled model (SmolLM2-135M-Instruct), and the vLLM
parameter mapping (vLLM is not installed here and needs a CUDA GPU, so only its pure mapping is tested)."""

from __future__ import annotations

import dataclasses

import pytest

from selfguide.engine.backends.base import SamplingParams, text_exceeds
from selfguide.engine.backends.vllm_backend import to_vllm_sampling
from selfguide.spec import TaskSpec

# -- vLLM mapping (fast, no model) ---------------------------------------------------------------------

VLLM_KEYS = {"n", "temperature", "top_k", "top_p", "max_tokens", "min_tokens", "stop", "seed", "logprobs"}


def test_vllm_mapping_of_defaults():
    assert to_vllm_sampling(SamplingParams()) == {
        "n": 1, "temperature": 1.0, "top_k": -1, "top_p": 1.0, "max_tokens": 256, "min_tokens": 0,
        "stop": None, "seed": None, "logprobs": None,
    }


def test_vllm_mapping_is_one_to_one_when_sampling():
    params = SamplingParams(n=2, best_of=5, temperature=0.7, top_k=40, top_p=0.9, max_tokens=32, min_tokens=3,
                            stop=("\n", "[output]"), seed=7)
    mapped = to_vllm_sampling(params)
    assert set(mapped) == VLLM_KEYS
    assert mapped == {
        # V1 has no best_of: draw best_of completions with their log-probabilities, keep the best n ourselves
        "n": 5, "logprobs": 0,
        "temperature": 0.7, "top_k": 40, "top_p": 0.9, "max_tokens": 32, "min_tokens": 3,
        "stop": ["\n", "[output]"], "seed": 7,
    }
    assert isinstance(mapped["stop"], list)


def test_vllm_mapping_without_best_of_needs_no_logprobs():
    mapped = to_vllm_sampling(SamplingParams(n=3, temperature=1.0, top_k=0))
    assert mapped["n"] == 3 and mapped["logprobs"] is None
    assert mapped["top_k"] == -1  # 0 (disabled) is -1 in vLLM
    # best_of no larger than n draws exactly n
    same = to_vllm_sampling(SamplingParams(n=3, best_of=3, temperature=1.0))
    assert same["n"] == 3 and same["logprobs"] is None
    smaller = to_vllm_sampling(SamplingParams(n=3, best_of=2, temperature=1.0))
    assert smaller["n"] == 3 and smaller["logprobs"] is None


def test_vllm_mapping_of_greedy_decoding():
    mapped = to_vllm_sampling(SamplingParams(n=4, best_of=8, temperature=0.0, top_k=10, top_p=0.5, seed=1,
                                             max_tokens=9, min_tokens=2, stop=("x",)))
    # greedy completions are all the same: one is drawn, no top-k / top-p truncation
    assert mapped["n"] == 1
    assert mapped["temperature"] == 0.0
    assert mapped["top_k"] == -1
    assert mapped["top_p"] == 1.0
    assert (mapped["max_tokens"], mapped["min_tokens"], mapped["stop"], mapped["seed"]) == (9, 2, ["x"], 1)


def test_vllm_mapping_covers_every_sampling_field():
    # every field of SamplingParams reaches vLLM (best_of through n and logprobs), but max_chars: vLLM has no
    # character limit, and decoding on changes no kept text (the caller drops what is past it)
    covered = {"n", "best_of", "temperature", "top_k", "top_p", "max_tokens", "min_tokens", "stop", "seed"}
    assert {f.name for f in dataclasses.fields(SamplingParams)} == covered | {"max_chars"}
    assert to_vllm_sampling(SamplingParams(max_chars=5)) == to_vllm_sampling(SamplingParams())


def test_a_text_exceeds_max_chars_only_when_no_continuation_can_bring_it_under():
    params = SamplingParams(max_chars=10, stop=('"\n',))
    assert not text_exceeds("x" * 40, SamplingParams())  # no limit
    assert not text_exceeds("0123456789", params)
    assert not text_exceeds("0123456789A", params)  # its last character may start a stop string
    assert text_exceeds("0123456789AB", params)
    assert not text_exceeds("  0123456789  \n\n", params)  # whitespace does not count
    assert not text_exceeds('short"\n and then a long tail', params)  # already cut at the stop string


# -- transformers backend on the real model (slow) ---------------------------------------------------------

TASK = TaskSpec.model_validate({
    "type": "classification",
    "instruction": "Given a short product review, decide whether the reviewer is happy. "
                   "Answer with exactly one word: positive or negative.",
    "labels": ["positive", "negative"],
    "examples": [
        {"input": "The battery lasts all day and the screen is gorgeous.", "output": "positive"},
        {"input": "It broke after two days and support never answered.", "output": "negative"},
        {"input": "Great value for the price, I would buy it again.", "output": "positive"},
    ],
})
COUNTING = "Count from 1 to 20: 1, 2, 3,"


@pytest.fixture(scope="module")
def backend():
    from selfguide.engine.backends import open_backend
    from selfguide.spec import ModelSpec
    from selfguide.spec.generation import Backend, GenerationSpec

    loaded = open_backend(ModelSpec(), GenerationSpec(backend=Backend.TRANSFORMERS), batch_size=8)
    yield loaded
    loaded.close()


def few_shot_prompt(backend, text: str) -> str:
    from selfguide.prompts import few_shot_messages

    return backend.render_chat(few_shot_messages(TASK, text))


def forward_logprob(backend, prompt: str, text: str, tokens: int) -> float | None:
    """Sum of the model's log-probabilities of `text` after `prompt` (plus end-of-sequence when the completion
    ended with it), or None when `text` does not re-encode into the completion's token count."""
    import torch

    tok = backend.tokenizer
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if len(ids) + 1 == tokens:
        ids = ids + [tok.eos_token_id]
    if len(ids) != tokens:
        return None
    with torch.no_grad():
        logits = backend.model(torch.tensor([prompt_ids + ids], device=backend.device)).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return float(sum(logprobs[len(prompt_ids) - 1 + i, t] for i, t in enumerate(ids)))


@pytest.mark.slow
def test_render_chat_uses_the_model_template(backend):
    messages = [{"role": "user", "content": "Hello there"}]
    text = backend.render_chat(messages, response_prefix='[input]="')
    assert "<|im_start|>user\nHello there<|im_end|>" in text
    assert text.endswith('<|im_start|>assistant\n[input]="')
    assert backend.render_chat(messages).endswith("<|im_start|>assistant\n")
    assert backend.render_chat(messages) + "xyz" == backend.render_chat(messages, "xyz")


@pytest.mark.slow
def test_batched_greedy_equals_one_prompt_at_a_time(backend, monkeypatch):
    prompts = [few_shot_prompt(backend, "Terrible, it broke on day one."),
               backend.render_chat([{"role": "user", "content": "Name a color."}]),
               COUNTING]
    lengths = [backend.count_tokens(p) for p in prompts]
    assert lengths[0] > 2 * lengths[1] and lengths[1] > lengths[2], lengths  # the batch really is padded
    params = SamplingParams(temperature=0.0, max_tokens=6)
    batched = backend.generate(prompts, params)
    monkeypatch.setattr(backend, "batch_size", 1)
    alone = [backend.generate([p], params)[0] for p in prompts]
    assert [[(c.text, c.tokens) for c in r] for r in batched] == [[(c.text, c.tokens) for c in r] for r in alone]
    assert all(len(r) == 1 for r in batched)
    assert batched[0][0].text.strip() == "negative"
    assert batched[2][0].text.startswith(" 4, 5")


@pytest.mark.slow
def test_n_samples_per_prompt_are_reproducible_with_a_seed(backend):
    prompts = [backend.render_chat([{"role": "user", "content": "Name a color."}]), COUNTING]
    params = SamplingParams(n=3, temperature=1.0, max_tokens=5, seed=11)
    first = backend.generate(prompts, params)
    assert [len(r) for r in first] == [3, 3]
    assert all(c.tokens >= 1 for r in first for c in r)
    assert len({c.text for c in first[0]}) > 1  # real samples, not one completion copied
    again = backend.generate(prompts, params)
    assert [[c.text for c in r] for r in again] == [[c.text for c in r] for r in first]
    # greedy decoding with n > 1 returns n copies of the one greedy completion
    greedy = backend.generate(prompts[:1], SamplingParams(n=2, temperature=0.0, max_tokens=5))
    assert len(greedy[0]) == 2 and greedy[0][0] == greedy[0][1]


@pytest.mark.slow
def test_best_of_keeps_the_most_likely_completions_in_order(backend):
    prompts = [backend.render_chat([{"role": "user", "content": "Name a color."}]), COUNTING]
    two = backend.generate(prompts, SamplingParams(n=2, best_of=4, temperature=1.0, top_k=5, max_tokens=5, seed=3))
    three = backend.generate(prompts, SamplingParams(n=3, best_of=4, temperature=1.0, top_k=5, max_tokens=5, seed=3))
    for kept2, kept3 in zip(two, three):
        assert len(kept2) == 2 and len(kept3) == 3
        logprobs = [c.logprob for c in kept3]
        assert all(lp < 0 for lp in logprobs)
        assert logprobs == sorted(logprobs, reverse=True)
        # the same four draws (same seed): the best two are the first two of the best three
        assert kept2 == kept3[:2]


@pytest.mark.slow
def test_logprob_is_the_models_log_probability_when_nothing_truncates(backend):
    """With temperature 1 and top-k disabled (0) the sampling distribution is the model's own, so the ranking
    key of `best_of` must be the model's log-probability of the completion (a forward pass recomputes it)."""
    prompt = backend.render_chat([{"role": "user", "content": "Name a color."}])
    completions = backend.generate([prompt], SamplingParams(n=2, best_of=4, temperature=1.0, top_k=0, top_p=1.0,
                                                            max_tokens=6, seed=3))[0]
    checked = 0
    for c in completions:
        expected = forward_logprob(backend, prompt, c.text, c.tokens)
        if expected is None:
            continue
        checked += 1
        # fails when top_k=0 is passed to transformers as None: generate() then fills in its default top_k=50
        # and both samples and log-probabilities come from the top-50 distribution, renormalised
        assert c.logprob == pytest.approx(expected, abs=0.02), (c, expected)
    assert checked, "no completion re-encoded to its own tokens"


@pytest.mark.slow
def test_stop_strings_cut_the_completion(backend):
    full = backend.generate([COUNTING], SamplingParams(temperature=0.0, max_tokens=14))[0][0]
    assert " 5" in full.text and " 7" in full.text, full.text
    cut = backend.generate([COUNTING], SamplingParams(temperature=0.0, max_tokens=14, stop=(" 7", " 5")))[0][0]
    assert cut.text == full.text[: full.text.index(" 5")]
    assert " 5" not in cut.text and " 7" not in cut.text
    assert cut.tokens < full.tokens  # generation stopped there, it was not only cut afterwards


@pytest.mark.slow
def test_max_chars_stops_decoding_a_completion_once_it_is_past_the_limit(backend):
    full = backend.generate([COUNTING], SamplingParams(temperature=0.0, max_tokens=30))[0][0]
    assert len(full.text) > 20, full.text
    capped = backend.generate([COUNTING], SamplingParams(temperature=0.0, max_tokens=30, max_chars=12))[0][0]
    assert full.text.startswith(capped.text) and len(capped.text.strip()) > 12
    assert capped.tokens < full.tokens  # decoding stopped, the text was not only cut afterwards
    assert not text_exceeds(capped.text[:-1], SamplingParams(max_chars=12))  # it stopped at the first token past


@pytest.mark.slow
def test_min_tokens_delays_the_end_of_sequence(backend):
    prompt = few_shot_prompt(backend, "Terrible, it broke on day one.")
    free = backend.generate([prompt], SamplingParams(temperature=0.0, max_tokens=10))[0][0]
    assert free.tokens < 6, free  # "negative" and the end of the turn
    forced = backend.generate([prompt], SamplingParams(temperature=0.0, max_tokens=10, min_tokens=6))[0][0]
    assert forced.tokens >= 6
    assert forced.text.startswith(free.text)


@pytest.mark.slow
def test_throughput_counters_grow(backend):
    before = dataclasses.replace(backend.throughput)
    prompts = [COUNTING, backend.render_chat([{"role": "user", "content": "Name a color."}])]
    out = backend.generate(prompts, SamplingParams(temperature=0.0, max_tokens=4))
    after = backend.throughput
    assert after.prompts - before.prompts == 2
    assert after.prompt_tokens - before.prompt_tokens == sum(backend.count_tokens(p) for p in prompts)
    assert after.generated_tokens - before.generated_tokens == sum(c.tokens for r in out for c in r) == 8
    assert after.seconds > before.seconds
    assert after.tokens_per_second > 0
    assert backend.generate([], SamplingParams()) == []
