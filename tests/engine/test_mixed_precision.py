"""`model.dtype: mixed`: linear layers compute in bf16 from bf16 copies of their weights; float32 weights, activations,
attention and KV cache. Not exact by design, so checked against the float32 model within bf16's tolerance, on the
real bundled model."""

from __future__ import annotations

import pytest
import torch

from selfguide.engine.backends.base import SamplingParams
from selfguide.engine.backends.mixed_precision import compute_linear_layers_in_bfloat16
from selfguide.engine.devices import resolve_dtype
from selfguide.spec.model import Dtype
from tests.engine.test_backend import few_shot_prompt

REVIEWS = ("Terrible, it broke on day one and support never answered.", "Works fine.",
           "I love the colour and it charges in minutes!")

# -- the pieces (fast, no model) ------------------------------------------------------------------------------


def test_mixed_loads_float32_weights():
    assert resolve_dtype(Dtype.MIXED, torch.device("cpu")) is torch.float32


class Wrapped(torch.nn.Linear):  # as an adapter wraps a layer it trains
    pass


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 300), torch.nn.GELU(), torch.nn.Linear(300, 64, bias=False),
                                Wrapped(64, 64))
    return model.requires_grad_(False)


def test_linear_layers_compute_from_a_bf16_copy_and_return_float32():
    exact, mixed = small_model(), small_model()
    keys = list(exact.state_dict())
    assert compute_linear_layers_in_bfloat16(mixed) == 2  # the wrapped layer is left to its wrapper
    hidden = torch.randn(5, 64)
    want, got = exact(hidden), mixed(hidden)
    assert got.dtype is torch.float32 and got == pytest.approx(want, abs=0.05)
    assert not torch.equal(got, want)  # really computed in bf16
    assert mixed[0].weight16.dtype is torch.bfloat16 and mixed[0].weight.dtype is torch.float32
    assert list(mixed.state_dict()) == keys  # the copies are never saved with the model
    assert not hasattr(mixed[3], "weight16")


def test_a_tied_output_layer_keeps_sharing_its_weights():
    embedding = torch.nn.Embedding(300, 64)
    head = torch.nn.Linear(64, 300, bias=False)
    head.weight = embedding.weight
    model = torch.nn.ModuleDict({"embed": embedding, "head": head})
    compute_linear_layers_in_bfloat16(model)
    assert model["head"].weight is model["embed"].weight
    assert torch.equal(model["head"].weight16, embedding.weight.detach().bfloat16())


# -- on the real model (slow) ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair():
    from selfguide.engine.backends.transformers_backend import TransformersBackend
    from selfguide.engine.models import locate
    from selfguide.spec import ModelSpec

    location = locate(ModelSpec())
    exact, mixed = TransformersBackend(location, Dtype.FLOAT32, 8), TransformersBackend(location, Dtype.MIXED, 8)
    yield exact, mixed
    exact.close()
    mixed.close()


@pytest.mark.slow
def test_weights_and_cache_stay_float32_while_linear_layers_run_in_bf16(pair, monkeypatch):
    _, mixed = pair
    assert {p.dtype for p in mixed.model.parameters()} == {torch.float32}
    assert {b.dtype for b in mixed.model.buffers() if b.is_floating_point() and b.dim() == 2} == {torch.bfloat16}
    caches: list[set[torch.dtype]] = []
    forward = mixed.model.forward

    def recording(*args, **kwargs):
        caches.append({layer.keys.dtype for layer in kwargs["past_key_values"].layers if layer.keys is not None})
        return forward(*args, **kwargs)

    monkeypatch.setattr(mixed.model, "forward", recording)
    mixed.generate([few_shot_prompt(mixed, text) for text in REVIEWS], SamplingParams(temperature=0.0, max_tokens=6))
    assert caches and all(dtypes <= {torch.float32} for dtypes in caches)


@pytest.mark.slow
def test_mixed_answers_and_scores_agree_with_float32_within_bf16_tolerance(pair):
    exact, mixed = pair
    prompts = [few_shot_prompt(exact, text) for text in REVIEWS]
    params = SamplingParams(temperature=0.0, max_tokens=4)
    assert [c[0].text for c in mixed.generate(prompts, params)] == [c[0].text for c in exact.generate(prompts, params)]
    labels = ["positive", "negative"]
    want, got = exact.score_answers(prompts, labels), mixed.score_answers(prompts, labels)
    for exact_row, mixed_row in zip(want, got):
        assert mixed_row == pytest.approx(exact_row, abs=0.5)
        assert mixed_row != pytest.approx(exact_row, abs=1e-4)  # bf16 really ran
    assert [max(labels, key=dict(zip(labels, row)).get) for row in got] == ["negative", "positive", "positive"]


@pytest.mark.slow
def test_an_adapter_still_applies_with_mixed_precision(tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from selfguide.engine.backends.transformers_backend import TransformersBackend
    from selfguide.engine.models import locate
    from selfguide.spec import ModelSpec

    location = locate(ModelSpec())
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(location.path)
    get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
                   ).save_pretrained(tmp_path / "adapter")
    tuned = TransformersBackend(location, Dtype.MIXED, 8, adapter=str(tmp_path / "adapter"))
    try:
        base = tuned.model.get_base_model()
        assert hasattr(base.get_output_embeddings(), "weight16")
        lora = [module for name, module in base.named_modules() if ".lora_" in name and hasattr(module, "weight")]
        assert lora and not any(hasattr(module, "weight16") for module in lora)  # the adapter computes in float32
        prompts = [few_shot_prompt(tuned, text) for text in REVIEWS]
        with_adapter = [row[0] for row in tuned.score_answers(prompts, ["positive"])]
        with tuned.adapter_disabled():
            without = [row[0] for row in tuned.score_answers(prompts, ["positive"])]
        assert with_adapter != pytest.approx(without, abs=0.05)
    finally:
        tuned.close()
