"""The transformers backend's decoding engine: one prefill per prompt shared by its n samples, a prompt prefix
common to a whole call prefilled once, finished sequences leaving the batch. Checked against plain
`model.generate` on the real bundled model (SmolLM2-135M-Instruct)."""

from __future__ import annotations

import pytest

from selfguide.engine.backends import transformers_backend
from selfguide.engine.backends.base import SamplingParams
from selfguide.engine.backends.transformers_backend import MIN_SHARED_PREFIX, shared_prefix_length
from tests.engine.test_backend import COUNTING, few_shot_prompt

CONTEXT = (
    "You are a patient teacher. Answer every question in full sentences, explain your reasoning step by step, "
    "and end with a short summary of what the student should remember. "
)
QUESTIONS = ["Why is the sky blue?", "Continue the list: 1, 2, 3, 4,", "Name three animals that live in the sea."]

# -- the common prefix (fast, no model) ----------------------------------------------------------------------


def test_shared_prefix_is_the_longest_common_start():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 3, 4, 7]]) == 3
    assert shared_prefix_length([[1, 2, 3], [9, 2, 3]]) == 0


def test_shared_prefix_leaves_every_prompt_a_token_of_its_own():
    # the last prompt token's logits start decoding, so it is never part of the shared prefix
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2
    assert shared_prefix_length([[5, 6], [5, 6]]) == 1
    assert shared_prefix_length([[1, 2, 3]]) == 0  # nothing is shared with a single prompt


# -- on the real model (slow) -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend():
    from selfguide.engine.backends import open_backend
    from selfguide.spec import ModelSpec
    from selfguide.spec.generation import Backend, GenerationSpec

    loaded = open_backend(ModelSpec(), GenerationSpec(backend=Backend.TRANSFORMERS), batch_size=8)
    yield loaded
    loaded.close()


def plain_generate(backend, prompt: str, max_tokens: int) -> tuple[str, int]:
    """Greedy decoding by `model.generate` alone, one prompt, no padding: the reference."""
    import torch
    from transformers import GenerationConfig

    ids = backend.tokenizer([prompt], add_special_tokens=False, return_tensors="pt")["input_ids"]
    eos = backend.model.generation_config.eos_token_id
    config = GenerationConfig(do_sample=False, max_new_tokens=max_tokens, eos_token_id=eos, pad_token_id=eos)
    with torch.inference_mode():
        out = backend.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
    tokens = out[0, ids.shape[1]:].tolist()
    return backend.tokenizer.decode(tokens, skip_special_tokens=True), len(tokens)


def chat(backend, question: str) -> str:
    return backend.render_chat([{"role": "user", "content": CONTEXT + question}])


def record_forward_shapes(backend, monkeypatch) -> list[tuple[int, int]]:
    """(rows, tokens) of every forward pass the model makes from now on."""
    shapes: list[tuple[int, int]] = []
    forward = backend.model.forward

    def recording(*args, **kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    monkeypatch.setattr(backend.model, "forward", recording)
    return shapes


def encode(backend, prompts: list[str]) -> list[list[int]]:
    return backend.tokenizer(prompts, add_special_tokens=False)["input_ids"]


@pytest.mark.slow
def test_greedy_equals_plain_generate_with_and_without_a_shared_prefix(backend):
    shared = [chat(backend, q) for q in QUESTIONS]
    few_shot = [few_shot_prompt(backend, text) for text in
                ("Terrible, it broke on day one.", "Works fine.", "I love the colour and it charges in minutes!")]
    unrelated = [COUNTING, backend.render_chat([{"role": "user", "content": "Name a color."}]), few_shot[0]]
    for prompts in (shared, few_shot, unrelated):
        lengths = [len(ids) for ids in encode(backend, prompts)]
        assert len(set(lengths)) == len(lengths)  # different lengths: padding is exercised
        got = backend.generate(prompts, SamplingParams(temperature=0.0, max_tokens=16))
        expected = [plain_generate(backend, p, 16) for p in prompts]
        assert [(c[0].text, c[0].tokens) for c in got] == expected
    assert shared_prefix_length(encode(backend, shared)) >= MIN_SHARED_PREFIX
    assert shared_prefix_length(encode(backend, few_shot)) >= MIN_SHARED_PREFIX
    assert shared_prefix_length(encode(backend, unrelated)) < MIN_SHARED_PREFIX


@pytest.mark.slow
def test_the_shared_prefix_is_prefilled_once_and_changes_no_greedy_output(backend, monkeypatch):
    prompts = [chat(backend, q) for q in QUESTIONS]
    encoded = encode(backend, prompts)
    shared = shared_prefix_length(encoded)
    params = SamplingParams(temperature=0.0, max_tokens=12)
    backend._prefix = None  # no prefix kept from an earlier test
    shapes = record_forward_shapes(backend, monkeypatch)
    reused = backend.generate(prompts, params)
    prefills = [shape for shape in shapes if shape[1] > 1]
    # the prefix alone, then the prompts' own tokens (in groups of similar length, left-padded to the longest)
    assert prefills[0] == (1, shared)
    assert sum(rows for rows, _ in prefills[1:]) == len(prompts)
    assert max(tokens for _, tokens in prefills[1:]) == max(map(len, encoded)) - shared
    monkeypatch.setattr(transformers_backend, "MIN_SHARED_PREFIX", 10**9)  # no prefix reuse
    shapes.clear()
    recomputed = backend.generate(prompts, params)
    assert [shape for shape in shapes if shape[1] > 1] == [(len(prompts), max(map(len, encoded)))]
    assert [[(c.text, c.tokens) for c in r] for r in reused] == [[(c.text, c.tokens) for c in r] for r in recomputed]
    for r, s in zip(reused, recomputed):
        assert r[0].logprob == pytest.approx(s[0].logprob, abs=1e-3)


@pytest.mark.slow
def test_prompts_of_very_different_lengths_are_prefilled_in_groups_and_decoded_together(backend, monkeypatch):
    prompts = [few_shot_prompt(backend, text) for text in (
        "Terrible. " * 40, "It broke on day one and support never answered my emails, not even once. " * 3,
        "Works fine.", "Meh.")]
    params = SamplingParams(temperature=0.0, max_tokens=10)
    backend._prefix = None
    shapes = record_forward_shapes(backend, monkeypatch)
    grouped = backend.generate(prompts, params)
    prefills = [shape for shape in shapes if shape[1] > 1]
    decoding_rows = [rows for rows, tokens in shapes if tokens == 1]
    monkeypatch.setattr(transformers_backend, "PREFILL_GROUP_RATIO", 0.0)  # one padded group
    backend._prefix = None
    shapes.clear()
    padded = backend.generate(prompts, params)
    assert [[c.text for c in r] for r in grouped] == [[c.text for c in r] for r in padded]
    for g, p in zip(grouped, padded):
        assert g[0].logprob == pytest.approx(p[0].logprob, abs=1e-3)
    own = sorted((len(ids) - prefills[0][1] for ids in encode(backend, prompts)), reverse=True)
    assert prefills[1:] == [(1, own[0]), (1, own[1]), (2, own[2])]  # not 4 rows padded to the longest
    assert decoding_rows[0] == len(prompts)  # decoded as one batch


@pytest.mark.slow
def test_chunks_of_one_stage_reuse_the_prefix_computed_for_the_first(backend, monkeypatch):
    # the first chunk's two inputs share a few words more than the few-shot block: the kept prefix is cut back
    prompts = [few_shot_prompt(backend, text) for text in
               ("I love the colour!", "I love it, works fine.", "Terrible, it broke on day one.", "Meh.", "Never again.")]
    params = SamplingParams(temperature=0.0, max_tokens=8)
    whole = backend.generate(prompts, params)
    backend._prefix = None
    shapes = record_forward_shapes(backend, monkeypatch)
    chunked = backend.generate(prompts[:2], params) + backend.generate(prompts[2:], params)
    scored = backend.score_answers(prompts[:1], ["positive", "negative"])
    assert [[c.text for c in r] for r in chunked] == [[c.text for c in r] for r in whole]
    prefix_prefills = [shape for shape in shapes if shape[0] == 1 and shape[1] >= MIN_SHARED_PREFIX]
    assert len(prefix_prefills) == 1, shapes  # the first chunk's; the second chunk and the scoring reuse it
    encoded = encode(backend, prompts)
    assert prefix_prefills[0][1] > shared_prefix_length(encoded) == len(backend._prefix.tokens)
    backend._prefix = None
    assert backend.score_answers(prompts[:1], ["positive", "negative"])[0] == pytest.approx(scored[0], abs=1e-4)


@pytest.mark.slow
def test_a_prefix_computed_with_the_adapter_is_not_reused_without_it(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from selfguide.engine.backends.transformers_backend import TransformersBackend
    from selfguide.engine.models import locate
    from selfguide.spec import ModelSpec

    location = locate(ModelSpec())
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(location.path)
    lora = get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    tuned = TransformersBackend(location, batch_size=8, adapter=str(tmp_path / "adapter"))
    try:
        prompts = [few_shot_prompt(tuned, text) for text in ("Works fine.", "Never again.", "Meh.")]
        params = SamplingParams(temperature=0.0, max_tokens=8)
        with tuned.adapter_disabled():
            fresh = tuned.generate(prompts, params)
        tuned._prefix = None
        with_adapter = tuned.generate(prompts, params)  # leaves the adapter's prefix behind
        with tuned.adapter_disabled():
            after = tuned.generate(prompts, params)
        assert [r[0].logprob for r in after] == pytest.approx([r[0].logprob for r in fresh], abs=1e-3)
        assert [r[0].logprob for r in with_adapter] != pytest.approx([r[0].logprob for r in fresh], abs=1e-3)
    finally:
        tuned.close()


@pytest.mark.slow
def test_n_samples_share_one_prefill_and_return_n_completions(backend, monkeypatch):
    prompts = [few_shot_prompt(backend, "Terrible, it broke on day one."), COUNTING]
    shapes = record_forward_shapes(backend, monkeypatch)
    out = backend.generate(prompts, SamplingParams(n=3, best_of=6, temperature=1.0, max_tokens=6, seed=5))
    assert [len(r) for r in out] == [3, 3]
    # batch size 8 holds one prompt's six samples: each prompt is prefilled once, in one row, longest first
    lengths = sorted((len(ids) for ids in encode(backend, prompts)), reverse=True)
    assert [shape for shape in shapes if shape[1] > 1] == [(1, length) for length in lengths]
    decoding = [rows for rows, tokens in shapes if tokens == 1]
    assert decoding and max(decoding) == 6  # then six rows, copies of the prompt's cache


@pytest.mark.slow
def test_best_of_keeps_the_most_likely_of_the_same_draws(backend):
    prompts = [backend.render_chat([{"role": "user", "content": "Name a color."}]), COUNTING]
    every = backend.generate(prompts, SamplingParams(n=6, temperature=1.5, top_k=20, max_tokens=6, seed=9))
    best = backend.generate(prompts, SamplingParams(n=3, best_of=6, temperature=1.5, top_k=20, max_tokens=6, seed=9))
    for drawn, kept in zip(every, best):
        assert len({c.text for c in drawn}) > 1
        assert all(c.logprob < 0 for c in drawn)
        assert kept == sorted(drawn, key=lambda c: -c.logprob)[:3]


@pytest.mark.slow
def test_logprob_is_that_of_the_sampling_distribution(backend, monkeypatch):
    """At temperature T (no truncation) a completion's log-probability is the sum of log softmax(logits / T) of
    its tokens, recomputed here by one forward pass over prompt + completion."""
    import torch

    sampled: dict[str, list[int]] = {}  # completion text -> its tokens, as the backend decodes them
    decode = backend.tokenizer.decode

    def recording(tokens, **kwargs):
        text = decode(tokens, **kwargs)
        sampled[text] = list(tokens)
        return text

    monkeypatch.setattr(backend.tokenizer, "decode", recording)
    prompt = backend.render_chat([{"role": "user", "content": "Name a color."}])
    completions = backend.generate([prompt], SamplingParams(n=4, temperature=0.5, max_tokens=6, seed=2))[0]
    prompt_ids = encode(backend, [prompt])[0]
    for c in completions:
        ids = sampled[c.text]
        assert len(ids) == c.tokens
        with torch.inference_mode():
            logits = backend.model(torch.tensor([prompt_ids + ids])).logits[0].float()
        steps = torch.log_softmax(logits[len(prompt_ids) - 1: -1] / 0.5, dim=-1)
        expected = float(steps.gather(1, torch.tensor(ids)[:, None]).sum())
        assert c.logprob == pytest.approx(expected, abs=0.02), (c, expected)


@pytest.mark.slow
def test_finished_sequences_leave_the_batch(backend, monkeypatch):
    short = few_shot_prompt(backend, "Terrible, it broke on day one.")  # "negative", then the end of the turn
    prompts = [short, COUNTING]
    shapes = record_forward_shapes(backend, monkeypatch)
    out = backend.generate(prompts, SamplingParams(temperature=0.0, max_tokens=12))
    assert out[0][0].tokens < 6 and out[1][0].tokens == 12
    rows = [rows for rows, tokens in shapes if tokens == 1]
    assert len(rows) == 11  # the first token comes from the prefill
    assert rows[0] == 2 and rows[-1] == 1 and rows == sorted(rows, reverse=True)


@pytest.mark.slow
def test_stop_strings_cut_sampled_completions_and_end_their_decoding(backend, monkeypatch):
    sampling = {"n": 4, "temperature": 0.7, "top_k": 5, "max_tokens": 12, "seed": 1}
    free = backend.generate([COUNTING], SamplingParams(**sampling))[0]
    assert all(" 6" in c.text and c.tokens == 12 for c in free), free
    shapes = record_forward_shapes(backend, monkeypatch)
    cut = backend.generate([COUNTING], SamplingParams(**sampling, stop=(" 6",)))[0]
    assert len(cut) == 4
    assert all(" 6" not in c.text and c.text.startswith(" 4") and c.tokens < 12 for c in cut), cut
    assert len(shapes) < 12  # every sample stopped before max_tokens: decoding ended early
