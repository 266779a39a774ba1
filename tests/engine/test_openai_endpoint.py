"""`backend: openai` against a real vLLM server on 127.0.0.1, started the way a published job's
`serving/vllm-serve.sh` says (docs/serving.md), with the CPU flags docs/serving.md gives and the bundled model's
weights in a Hugging Face cache (as an air-gapped cluster pre-loads one): one server serves every test of this
module, because it takes 70-170 s to start here.

Server errors, 429s, timeouts and a server without `n` or log-probabilities are injected by a reverse proxy in
front of the real server (tests/harness/http_faults.py): the real server never misbehaves on cue."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from selfguide.contract.errors import ExitCode, InvalidInput
from selfguide.contract.serving import served_model_name
from selfguide.engine.backends import open_backend
from selfguide.engine.backends.base import SamplingParams
from selfguide.engine.backends.openai_backend import (
    EndpointRefused,
    EndpointUnreachable,
    LocalAdapter,
    OpenAIBackend,
)
from selfguide.engine.models import locate
from selfguide.prompts import few_shot_messages
from selfguide.spec import ModelSpec, SelfGuideJobSpec, TaskSpec
from selfguide.spec.endpoint import API_KEY_ENV
from selfguide.spec.generation import GenerationSpec
from selfguide.stages.train.serving import serving_files
from tests.harness.controlplane import die_with_parent, free_port, kill_group, tail
from tests.harness.http_faults import Faults, faulty_proxy
from tests.harness.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    shutil.which("python3") is None or __import__("importlib").util.find_spec("vllm") is None,
    reason="vLLM is not installed (make setup installs its CPU build on x86-64)")]

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
JOB = "handoff"
TASK = {"type": "classification", "instruction": "Is the review positive or negative?",
        "labels": ["positive", "negative"],
        "examples": [{"input": "I love it, works great.", "output": "positive"},
                     {"input": "Terrible, broke in a day.", "output": "negative"}]}
QUESTIONS = ["Name a primary colour.", "What is two plus two? Answer with a number only.",
             "Write one sentence about the sea."]
CPU_FLAGS = ["--dtype", "float32", "--max-model-len", "2048", "--enable-chunked-prefill", "False",
             "--max-num-batched-tokens", "2048"]
"""docs/serving.md, "On a CPU": float32 where the CPU lacks bf16 instructions, whole-prompt prefill (seeded
sampling), a bounded context."""


@dataclass
class Server:
    url: str
    """`http://127.0.0.1:<port>`"""
    adapter: Path
    base_name: str


def hub_cache(root: Path) -> Path:
    """A Hugging Face cache (`HF_HOME`) holding the bundled model under its Hub id, as `huggingface-cli download`
    leaves one."""
    snapshot = root / "hub" / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / "bundled"
    snapshot.mkdir(parents=True)
    for file in Path(locate(ModelSpec()).path).iterdir():
        (snapshot / file.name).symlink_to(file)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("bundled")
    return root


def random_adapter(out: Path) -> Path:
    """A rank-16 LoRA adapter on all seven projections with random (non-zero) weights, saved as training saves
    one, so that it changes what the model says."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)  # the same adapter in every run
    model = AutoModelForCausalLM.from_pretrained(locate(ModelSpec()).path)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, init_lora_weights=False,
                                     task_type="CAUSAL_LM")).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The serving files of a published job (its adapter in `<workdir>/train/adapter`), and the server their
    script starts."""
    root = tmp_path_factory.mktemp("serving")
    workdir = root / "work"
    adapter = random_adapter(workdir / "train" / "adapter")
    spec = SelfGuideJobSpec.model_validate({"task": TASK})
    serving = workdir / "serving"
    serving.mkdir()
    script = serving / "vllm-serve.sh"
    script.write_text(serving_files(spec, workdir, JOB, "default")["vllm-serve.sh"])
    port = free_port()
    env = {**os.environ, "HF_HOME": str(hub_cache(root / "hf")), "HF_HUB_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
           "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
    log = root / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(["sh", str(script), "--host", "127.0.0.1", "--port", str(port), *CPU_FLAGS],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=die_with_parent)  # noqa: PLW1509 (only a prctl syscall)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or models(url), "the vLLM server", timeout=600, interval=2)
        assert process.poll() is None, f"the server exited with {process.returncode}:\n{tail(log)}"
        yield Server(url, adapter, served_model_name(spec))
    finally:
        kill_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            kill_group(process.pid, signal.SIGKILL)
            process.wait()


def models(url: str) -> list[dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=5) as response:
            return json.load(response)["data"]
    except OSError:
        return []


def complete(url: str, **body: Any) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.load(response)


def generation(url: str, **endpoint: Any) -> GenerationSpec:
    return GenerationSpec.model_validate({"backend": "openai", "endpoint": {
        "url": f"{url}/v1", "model": "smollm2-135m-instruct", "maxRetries": 2, **endpoint}})


def connect(url: str, **endpoint: Any) -> OpenAIBackend:
    backend = open_backend(ModelSpec(), generation(url, **endpoint), None)
    assert isinstance(backend, OpenAIBackend)
    return backend


def rendered(backend: Any, texts: list[str]) -> list[str]:
    return [backend.render_chat([{"role": "user", "content": t}]) for t in texts]


def greedy(backend: Any, prompts: list[str], tokens: int = 12) -> list[str]:
    return [c[0].text for c in backend.generate(prompts, SamplingParams(temperature=0.0, max_tokens=tokens))]


@pytest.fixture(scope="module")
def reference(server: Server):
    """The transformers backend on the same weights (float32), with the same adapter."""
    from selfguide.engine.backends.transformers_backend import TransformersBackend

    return TransformersBackend(locate(ModelSpec()), adapter=str(server.adapter))


def test_the_published_serving_script_serves_the_adapter(server: Server, reference) -> None:
    """The serving hand-off, run: `/v1/models` lists the base model and the job's adapter (from its work
    directory), and a completion through the adapter answers as the adapter does in the transformers backend,
    differently from the base model."""
    listed = {m["id"]: m for m in models(server.url)}
    assert set(listed) == {server.base_name, JOB}
    assert listed[JOB]["root"] == str(server.adapter.absolute()) and listed[JOB]["parent"] == server.base_name
    prompt = "<|im_start|>user\nName a primary colour.<|im_end|>\n<|im_start|>assistant\n"
    through_adapter = complete(server.url, model=JOB, prompt=prompt, max_tokens=12, temperature=0)
    base = complete(server.url, model=server.base_name, prompt=prompt, max_tokens=12, temperature=0)
    assert through_adapter["choices"][0]["text"].strip()
    assert through_adapter["choices"][0]["text"] != base["choices"][0]["text"]
    assert through_adapter["choices"][0]["text"] == greedy(reference, [prompt])[0]


def test_greedy_generation_over_http_equals_the_transformers_backend(server: Server, reference) -> None:
    backend = connect(server.url)
    try:
        with reference.adapter_disabled():
            expected = greedy(reference, rendered(reference, QUESTIONS))
        assert greedy(backend, rendered(backend, QUESTIONS)) == expected
        assert backend.throughput.prompts == len(QUESTIONS) and backend.throughput.generated_tokens > 0
    finally:
        backend.close()


def test_seeded_sampling_over_http_is_reproducible_with_n_samples_and_best_of(server: Server) -> None:
    backend = connect(server.url)
    try:
        prompts = rendered(backend, QUESTIONS[:2]) * 2  # identical prompts get their own seeds
        params = SamplingParams(n=4, temperature=1.0, max_tokens=8, seed=11)
        first = backend.generate(prompts, params)
        assert [len(c) for c in first] == [4] * len(prompts)
        assert [[c.text for c in cs] for cs in backend.generate(prompts, params)] == [[c.text for c in cs] for cs in first]
        assert [c.text for c in first[0]] != [c.text for c in first[2]]
        other = backend.generate(prompts, SamplingParams(n=4, temperature=1.0, max_tokens=8, seed=12))
        assert [[c.text for c in cs] for cs in other] != [[c.text for c in cs] for cs in first]
        best = backend.generate(prompts[:1], SamplingParams(n=2, best_of=6, temperature=1.0, max_tokens=8, seed=3))[0]
        assert len(best) == 2 and best[0].logprob >= best[1].logprob and best[0].logprob < 0
    finally:
        backend.close()


def test_label_likelihood_over_http_matches_the_transformers_backend(server: Server, reference) -> None:
    """One request at a time: this CPU server runs with `--enable-lora`, and vLLM's CPU LoRA kernel dies on prompt
    log-probabilities for several requests in one step (docs/performance.md, "vLLM defects", 7)."""
    backend = connect(server.url, concurrency=1)
    try:
        task = TaskSpec.model_validate(TASK)
        prompts = [backend.render_chat(few_shot_messages(task, r)) for r in ("Best purchase ever!", "Awful.", "ok")]
        labels = ["positive", "negative"]
        with reference.adapter_disabled():
            expected = reference.score_answers(prompts, labels)
        got = backend.score_answers(prompts, labels)
        for row, want in zip(got, expected, strict=True):
            assert row == pytest.approx(want, abs=0.02)  # float32 on both; kernels differ in summation order
    finally:
        backend.close()


def test_a_prompt_longer_than_the_servers_context_is_skipped(server: Server) -> None:
    backend = connect(server.url)
    try:
        assert backend.max_model_len == 2048  # the server's, from /v1/models
        long = rendered(backend, ["word " * 3000])[0]
        completions = backend.generate([long, rendered(backend, QUESTIONS[:1])[0]], SamplingParams(max_tokens=4))
        assert completions[0] == [] and len(completions[1]) == 1
        assert backend.throughput.skipped_prompts == 1
    finally:
        backend.close()


def test_an_adapter_loaded_into_the_server_answers_as_the_published_one_and_is_unloaded(server: Server) -> None:
    """`endpoint.adapter: server`: the evaluate stage's adapter goes into the server at run time (under its
    digest's name), answers as the same adapter served by the script, and leaves when the backend closes."""
    backend = open_backend(ModelSpec(), generation(server.url, adapter="server"), None, adapter=str(server.adapter))
    assert isinstance(backend, OpenAIBackend) and backend.adapter
    try:
        assert backend.adapter in {m["id"] for m in models(server.url)}
        prompts = rendered(backend, QUESTIONS)
        published = [complete(server.url, model=JOB, prompt=p, max_tokens=12, temperature=0)["choices"][0]["text"]
                     for p in prompts]
        assert greedy(backend, prompts) == published
        with backend.adapter_disabled():
            assert greedy(backend, prompts) != published
    finally:
        backend.close()
    assert {m["id"] for m in models(server.url)} == {server.base_name, JOB}


def test_a_local_adapter_runs_here_while_the_base_model_answers_over_http(server: Server, reference) -> None:
    backend = open_backend(ModelSpec(), generation(server.url), None, adapter=str(server.adapter))
    assert isinstance(backend, LocalAdapter)
    try:
        prompts = rendered(backend, QUESTIONS)
        assert greedy(backend, prompts) == greedy(reference, prompts)
        with backend.adapter_disabled():
            base = greedy(backend, prompts)
        assert backend.endpoint.throughput.prompts == len(prompts)
        with reference.adapter_disabled():
            assert base == greedy(reference, prompts)
    finally:
        backend.close()


def test_429_and_server_errors_are_retried_a_bounded_number_of_times(server: Server) -> None:
    direct = connect(server.url)
    prompt = rendered(direct, QUESTIONS[:1])
    expected = greedy(direct, prompt)
    direct.close()
    faults = Faults(statuses=[429, 503])
    with faulty_proxy(server.url, faults) as proxy:
        backend = connect(proxy, maxRetries=2)
        try:
            assert greedy(backend, prompt) == expected
            assert faults.seen.count("/v1/completions") == 3  # 429, 503, then the answer
            faults.always = 502
            with pytest.raises(EndpointUnreachable, match=r"answered 502 \(injected 502\) after 2 retries") as error:
                greedy(backend, prompt)
            assert error.value.exit_code is ExitCode.RETRYABLE
            assert faults.seen.count("/v1/completions") == 3 + 3  # then the request and its 2 retries
        finally:
            backend.close()


def test_a_request_that_times_out_is_retried_then_fails_as_retryable(server: Server) -> None:
    faults = Faults(delay=3.0)
    with faulty_proxy(server.url, faults) as proxy:
        backend = connect(proxy, timeoutSeconds=1, maxRetries=1)
        try:
            with pytest.raises(EndpointUnreachable, match=r"timeoutSeconds \(1 s\)"):
                greedy(backend, rendered(backend, QUESTIONS[:1]))
            assert faults.seen.count("/v1/completions") == 2
        finally:
            backend.close()


def without_n(answer: dict[str, Any]) -> dict[str, Any]:
    return {**answer, "choices": answer["choices"][:1]}


def without_logprobs(answer: dict[str, Any]) -> dict[str, Any]:
    return {**answer, "choices": [{**c, "logprobs": None} for c in answer["choices"]]}


@pytest.mark.parametrize(("rewrite", "params", "problem"), [
    (without_n, SamplingParams(n=3, temperature=1.0, max_tokens=4, seed=1), "must support n"),
    (without_logprobs, SamplingParams(n=1, best_of=3, temperature=1.0, max_tokens=4, seed=1), "no log-probabilities"),
])
def test_a_server_without_n_or_logprobs_is_refused_clearly(server: Server, rewrite, params, problem) -> None:
    with faulty_proxy(server.url, Faults(rewrite=rewrite)) as proxy:
        backend = connect(proxy)
        try:
            with pytest.raises(EndpointRefused, match=problem) as error:
                backend.generate(rendered(backend, QUESTIONS[:1]), params)
            assert error.value.exit_code is ExitCode.PERMANENT and proxy in str(error.value)
        finally:
            backend.close()


def test_scoring_needs_prompt_logprobs(server: Server) -> None:
    with faulty_proxy(server.url, Faults(rewrite=without_logprobs)) as proxy:
        backend = connect(proxy, concurrency=1)
        try:
            with pytest.raises(EndpointRefused, match="no log-probabilities"):
                backend.score_answers(rendered(backend, QUESTIONS[:1]), ["yes", "no"])
        finally:
            backend.close()


def test_a_model_the_server_does_not_serve_is_named_with_what_it_serves(server: Server) -> None:
    with pytest.raises(EndpointRefused, match=r"generation.endpoint.model 'qwen-7b': .* serves handoff, smollm2"):
        open_backend(ModelSpec(), generation(server.url, model="qwen-7b"), None)


def test_the_api_key_comes_from_the_environment_and_never_reaches_a_message(server: Server, monkeypatch) -> None:
    secret = {"apiKeySecret": {"name": "endpoint-key"}}
    with faulty_proxy(server.url, Faults(bearer="s3cret-value")) as proxy:
        monkeypatch.delenv(API_KEY_ENV, raising=False)
        with pytest.raises(InvalidInput, match=f"apiKeySecret is set but {API_KEY_ENV} is empty"):
            connect(proxy, **secret)
        monkeypatch.setenv(API_KEY_ENV, "s3cret-value")
        backend = connect(proxy, **secret)
        try:
            assert greedy(backend, rendered(backend, QUESTIONS[:1]), tokens=4)[0]
        finally:
            backend.close()
        monkeypatch.setenv(API_KEY_ENV, "wrong-value")
        with pytest.raises(EndpointRefused, match="answered 401: invalid API key; check generation.endpoint") as error:
            connect(proxy, **secret)
        assert "wrong-value" not in str(error.value) and "s3cret" not in str(error.value)


def test_a_whole_job_runs_against_the_server(server: Server, tmp_path: Path) -> None:
    """`selfguide run` with `backend: openai`: inputs and annotations come from the server, training runs here,
    and the evaluation prompts the base model over HTTP and the fine-tuned adapter loaded into the server."""
    from tests.stage_runs import read_jsonl, run_cli, sentiment_manifest, write_manifest

    items = [{"input": "Great screen and the battery lasts.", "output": "positive"},
             {"input": "It stopped working after a week.", "output": "negative"}]
    manifest = sentiment_manifest(evaluation={"examples": items, "maxNewTokens": 6})
    manifest["spec"]["generation"] |= {"backend": "openai", "endpoint": {
        "url": f"{server.url}/v1", "model": server.base_name, "adapter": "server"}}
    manifest["spec"]["training"] = {"epochs": 1, "batchSize": 4}
    done = run_cli("run", write_manifest(tmp_path / "job.yaml", manifest), "--workdir", tmp_path / "work",
                   timeout=1500)
    assert done.returncode in (0, 4), done.stdout[-3000:] + done.stderr[-3000:]  # 4: a gate, none is set here
    work = tmp_path / "work"
    assert read_jsonl(work / "generate" / "train.jsonl")
    report = json.loads((work / "evaluate" / "report.json").read_text(encoding="utf-8"))
    assert report["examples"] == len(items)
    assert any(row["fewShotPrompting"]["answer"] for row in report["predictions"])
    assert {m["id"] for m in models(server.url)} == {server.base_name, JOB}  # the job's adapter was unloaded
