"""The real vLLM engine on CPU (its CPU build, which `make setup` installs on x86-64): one engine on the bundled
model with a LoRA adapter serves every test of this module, because an engine takes 70-170 s to start here.

Each workaround of docs/performance.md ("vLLM on CPU") has a test here that fails without it: a seeded request
whose prompt is longer than one prefill chunk (chunked prefill off), label scoring through the adapter for
several prompts (one request per call), a bounded KV cache (without it the engine refuses to start beside the
test suite), float32 for `auto` on a CPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from selfguide.engine.backends.base import SamplingParams
from selfguide.engine.models import locate
from selfguide.prompts import few_shot_messages
from selfguide.spec import ModelSpec, TaskSpec
from selfguide.spec.generation import Backend, GenerationSpec
from selfguide.spec.model import Dtype

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="vLLM is not installed (make setup installs its CPU build on x86-64)"),
]

TASK = TaskSpec.model_validate({
    "type": "classification", "instruction": "Is the review positive or negative?",
    "labels": ["positive", "negative"],
    "examples": [{"input": "I love it, works great.", "output": "positive"},
                 {"input": "Terrible, broke in a day.", "output": "negative"}],
})
REVIEWS = ["Best purchase I made this year, highly recommended!", "Awful. It stopped working and smells bad.", "ok"]
QUESTIONS = ["Name a primary colour.", "What is two plus two? Answer with a number only.",
             "Write one sentence about the sea."]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    """A LoRA adapter of rank 16 on all seven projections of the bundled model, with random (non-zero) weights so
    that it changes what the model says, saved as training saves one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(locate(ModelSpec()).path)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets,
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return out


_ENGINE_PROCESSES: dict[int, set[int]] = {}
"""The processes each engine of this module started (its engine core and worker)."""


def _children() -> set[int]:
    """This process's live children, but multiprocessing's resource tracker (shared, it outlives any engine)."""
    from multiprocessing import resource_tracker

    import psutil

    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    return {p.pid for p in psutil.Process().children(recursive=True)
            if p.pid != tracker and p.is_running() and p.status() != psutil.STATUS_ZOMBIE}


@pytest.fixture(scope="module")
def engine(adapter: Path):
    import torch

    from selfguide.engine.backends import open_backend, vllm_platform

    if torch.cuda.is_available() or vllm_platform() != "cpu":
        pytest.skip("these tests run vLLM's CPU build without a GPU (tests/gpu runs the CUDA build)")
    before = _children()
    backend = open_backend(ModelSpec(), GenerationSpec(backend=Backend.VLLM, seed=3), None, adapter=str(adapter))
    _ENGINE_PROCESSES[id(backend)] = _children() - before
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def reference(adapter: Path):
    """The transformers backend on the same model and adapter, float32."""
    from selfguide.engine.backends.transformers_backend import TransformersBackend

    backend = TransformersBackend(locate(ModelSpec()), Dtype.FLOAT32, 8, adapter=str(adapter))
    yield backend
    backend.close()


def rendered(backend, texts: list[str]) -> list[str]:
    return [backend.render_chat([{"role": "user", "content": t}]) for t in texts]


def greedy(backend, prompts: list[str], tokens: int = 12) -> list[str]:
    return [c[0].text for c in backend.generate(prompts, SamplingParams(temperature=0.0, max_tokens=tokens))]


def test_the_engine_runs_on_cpu_in_float32_with_a_bounded_kv_cache(engine) -> None:
    config = engine.llm.llm_engine.vllm_config
    assert config.device_config.device_type == "cpu"
    assert str(config.model_config.dtype) == "torch.float32"  # `auto` on a CPU, as documented
    assert config.cache_config.kv_cache_memory_bytes == 2 * 2**30
    assert config.scheduler_config.enable_chunked_prefill is False
    assert config.scheduler_config.max_num_batched_tokens >= engine.max_model_len == 8192
    assert config.model_config.enforce_eager is False  # opened without a workload size: compiled, vLLM's default


def test_greedy_output_equals_the_transformers_backend(engine, reference) -> None:
    """Both run float32 on the same weights: greedy text is equal, with and without the adapter."""
    prompts = rendered(engine, QUESTIONS)
    with engine.adapter_disabled(), reference.adapter_disabled():
        base = greedy(engine, prompts)
        assert base == greedy(reference, prompts)
    tuned = greedy(engine, prompts)
    assert tuned == greedy(reference, prompts)
    assert tuned != base  # the adapter is applied


def test_seeded_sampling_is_reproducible_and_gives_n_samples_per_prompt(engine) -> None:
    prompt = engine.render_chat([{"role": "user", "content": "Write one random word."}])
    params = SamplingParams(n=4, temperature=1.0, top_k=0, max_tokens=12, seed=5)
    with engine.adapter_disabled():
        first, second = engine.generate([prompt, prompt], params)
        again = engine.generate([prompt, prompt], params)
        best = engine.generate([prompt], SamplingParams(n=2, best_of=6, temperature=1.0, max_tokens=8, seed=1))[0]
    assert len(first) == len(second) == 4
    assert [c.text for c in first] != [c.text for c in second]  # identical prompts, a seed each
    assert again == [first, second]
    assert len(best) == 2 and best[0].logprob >= best[1].logprob


def test_a_seeded_prompt_longer_than_a_prefill_chunk_keeps_the_engine_alive(engine) -> None:
    """vLLM's CPU sampler kills the engine (`CPU Generator does not use offset`) when a seeded request is
    prefilled in several chunks; the backend prefills whole prompts. This prompt is longer than the batch vLLM
    would otherwise prefill at once (2,048 tokens on CPU)."""
    long = engine.render_chat([{"role": "user", "content": "Summarise: " + "the cat sat on the mat. " * 700}])
    assert 4096 < engine.count_tokens(long) < engine.max_model_len
    with engine.adapter_disabled():
        (samples,) = engine.generate([long], SamplingParams(n=2, temperature=0.8, max_tokens=4, seed=9))
        assert len(samples) == 2
        assert greedy(engine, rendered(engine, QUESTIONS[:1]), 4)  # still serving


def test_label_likelihood_with_and_without_the_adapter_matches_transformers(engine, reference) -> None:
    """Several prompts scored through the adapter (vLLM's CPU LoRA kernel fails on prompt log-probabilities for
    more than one request per call); scores agree with the transformers backend to float32 rounding."""
    prompts = [engine.render_chat(few_shot_messages(TASK, text)) for text in REVIEWS]
    labels = list(TASK.labels or [])
    with engine.adapter_disabled(), reference.adapter_disabled():
        base = engine.score_answers(prompts, labels)
        expected_base = reference.score_answers(prompts, labels)
    tuned = engine.score_answers(prompts, labels)
    expected_tuned = reference.score_answers(prompts, labels)
    for got, expected in zip(base + tuned, expected_base + expected_tuned, strict=True):
        assert got == pytest.approx(expected, abs=2e-2)
    assert [s for row in tuned for s in row] != pytest.approx([s for row in base for s in row], abs=1e-3)


def test_close_stops_the_engine_processes(engine) -> None:
    """The module's engine, closed (this is the last test that uses it): the processes it started are gone and a
    second close (the fixture's) is harmless."""
    started = _ENGINE_PROCESSES[id(engine)]
    assert started, "vLLM runs its engine core in a process of its own"
    assert greedy(engine, rendered(engine, QUESTIONS[:1]), 4)
    engine.close()
    engine.close()
    assert not _children() & started


def test_a_whole_job_runs_on_vllm_and_evaluates_base_and_fine_tuned_model(tmp_path: Path) -> None:
    """`selfguide run` with `generation.backend: vllm`: generate on the engine, train, then evaluate the base model
    (few-shot prompting, adapter disabled) and the fine-tuned one (its adapter loaded into the engine)."""
    import json

    from tests.stage_runs import read_jsonl, run_cli, sentiment_manifest, write_manifest

    items = [{"input": "Great screen and the battery lasts.", "output": "positive"},
             {"input": "It stopped working after a week.", "output": "negative"},
             {"input": "Lovely, works perfectly.", "output": "positive"},
             {"input": "Broken on arrival, useless.", "output": "negative"}]
    manifest = sentiment_manifest(evaluation={"examples": items, "maxNewTokens": 6})
    manifest["spec"]["generation"] |= {"backend": "vllm", "kvCacheGib": 0.5}
    manifest["spec"]["training"] = {"epochs": 1, "batchSize": 4}
    spec_file = write_manifest(tmp_path / "job.yaml", manifest)
    done = run_cli("run", spec_file, "--workdir", tmp_path / "work", timeout=1500)
    assert done.returncode in (0, 4), done.stdout[-3000:] + done.stderr[-3000:]  # 4: a gate, none is set here
    assert "'enforce_eager': True" in done.stdout + done.stderr  # stages this small run the model eagerly (no compile)
    work = tmp_path / "work"
    assert read_jsonl(work / "generate" / "train.jsonl")
    report = json.loads((work / "evaluate" / "report.json").read_text(encoding="utf-8"))
    assert report["examples"] == len(items)
    answers = {system: [row[system]["answer"] for row in report["predictions"]]
               for system in ("fewShotPrompting", "selfGuide")}
    assert all(len(a) == len(items) for a in answers.values())
    assert any(answers["fewShotPrompting"])  # the base model answered through the engine
