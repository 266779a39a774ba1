"""Annotation and input generation on the bundled model: the engine before (plain `model.generate` with
`num_return_sequences`, kept here as `legacy_generate`) and now (`TransformersBackend.generate`).

    .venv/bin/python benchmarks/annotation_throughput.py [--quick] [--task PATH] [--inputs 8] [--samples 20]
        [--keep 10] [--max-tokens 32] [--min-tokens 0] [--input-prompts 10] [--input-tokens 64] [--pool 0]
        [--workloads annotation inputGeneration] [--path both|old|new] [--length-stop] [--mixed]

Annotation: the few-shot chat of the task (`few_shot_messages`) for `--inputs` inputs of the task's validation
split (they stand for generated inputs), `--samples` samples per prompt, the best `--keep` kept, the job defaults
otherwise (temperature 0.2, top-k 10). Input generation: `--input-prompts` input-generation prompts, one sample
each, with the stage's stop strings; `--pool N` builds them as a later round does, with 1 to 10 of N earlier
inputs per prompt after the gold ones (the prompts then share only the template and the gold inputs). Both paths run on the same loaded model, one after the other, with the same
seed; the figures are wall time, generated tokens per second and prompt tokens per second (model load excluded).
The last line is `speedup: <x>x`, new over old annotation wall time. `--path old|new` runs one path only (peak
memory: `/usr/bin/time -v`).

`--length-stop` measures input generation on the new path twice instead, without and with decoding stopped past
the input length filter's band (`SamplingParams.max_chars`, as the stage sets it), and counts the inputs the
length filter keeps in each (sampled rows draw from one random stream, so a row that stops early changes what
the others draw: the counts agree in distribution, not row by row); its last line is `length stop speedup: <x>x`.

`--mixed` measures the new path twice instead, the model loaded with `model.dtype: float32` and with `mixed`
(linear layers in bf16, everything else float32), on the selected workloads with the same seeds; it prints how
many annotated inputs keep their top answer, and its last line is `mixed precision speedup: <x>x` (total wall
time of the workloads, float32 over mixed). `--length-stop` applies to both.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import GenerationConfig

from selfguide.engine.backends.base import Completion, SamplingParams, cut_at_stop, keep_n
from selfguide.engine.backends.transformers_backend import TransformersBackend
from selfguide.engine.models import locate
from selfguide.experiments.bench import BenchTask
from selfguide.prompts import (
    INPUT_RESPONSE_PREFIX,
    INPUT_STOP,
    extract_input,
    few_shot_messages,
    input_generation_prompt,
)
from selfguide.spec import ModelSpec, TaskSpec, TaskType
from selfguide.spec.generation import RELEASED_INPUT_TEMPERATURE, LengthFilterSpec
from selfguide.spec.model import Dtype
from selfguide.stages.generate.filters import LengthBand, LengthFilter, length_band
from selfguide.stages.generate.stage import input_char_limit

DEFAULT_TASK = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "sni" / "task190_snli_classification.json"


# -- the engine before this change, verbatim but for `self` -> `backend` ------------------------------------

def legacy_generate(backend: TransformersBackend, prompts: Sequence[str], params: SamplingParams
                    ) -> list[list[Completion]]:
    """`generate` as it was: every prompt copied `draws` times before prefill, scores kept for every step."""
    if params.seed is not None:
        torch.manual_seed(params.seed)
    encoded = backend.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    draws = 1 if params.greedy else params.samples
    per_batch = max(1, backend._sequences_per_batch(len(encoded[order[0]]), params) // draws)
    results: list[list[Completion]] = [[] for _ in prompts]
    started = time.perf_counter()
    for first in range(0, len(order), per_batch):
        chunk = order[first : first + per_batch]
        generated = _legacy_batch(backend, [encoded[i] for i in chunk], params, draws)
        for index, completions in zip(chunk, generated):
            results[index] = keep_n(completions, params.n)
    backend.throughput.prompts += len(prompts)
    backend.throughput.prompt_tokens += sum(map(len, encoded))
    backend.throughput.seconds += time.perf_counter() - started
    return results


def _legacy_config(backend: TransformersBackend, params: SamplingParams, draws: int) -> GenerationConfig:
    defaults = backend.model.generation_config
    sampling = {} if params.greedy else {
        "temperature": params.temperature, "top_k": params.top_k, "top_p": params.top_p,
    }
    return GenerationConfig(
        do_sample=not params.greedy,
        num_return_sequences=draws,
        max_new_tokens=params.max_tokens,
        min_new_tokens=params.min_tokens or None,
        stop_strings=list(params.stop) or None,
        eos_token_id=defaults.eos_token_id if defaults.eos_token_id is not None else backend.tokenizer.eos_token_id,
        pad_token_id=backend.tokenizer.pad_token_id,
        return_dict_in_generate=True,
        output_scores=draws > params.n,
        **sampling,
    )


@torch.inference_mode()
def _legacy_batch(backend: TransformersBackend, batch: list[list[int]], params: SamplingParams, draws: int
                  ) -> list[list[Completion]]:
    padded = backend.tokenizer.pad({"input_ids": batch}, return_tensors="pt").to(backend.device)
    config = _legacy_config(backend, params, draws)
    out = backend.model.generate(**padded, generation_config=config, tokenizer=backend.tokenizer)
    new_tokens = out.sequences[:, padded["input_ids"].shape[1] :]
    logprobs = None
    if config.output_scores:
        scores = backend.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        logprobs = scores.masked_fill(~torch.isfinite(scores), 0.0)
    eos = set(backend._eos) | {backend.tokenizer.pad_token_id}
    completions: list[list[Completion]] = [[] for _ in batch]
    for row, tokens in enumerate(new_tokens.tolist()):
        length = next((i + 1 for i, t in enumerate(tokens) if t in eos), len(tokens))
        text = str(backend.tokenizer.decode(tokens[:length], skip_special_tokens=True))
        logprob = float(logprobs[row, :length].sum()) if logprobs is not None else 0.0
        backend.throughput.generated_tokens += length
        completions[row // draws].append(Completion(cut_at_stop(text, params.stop), logprob, length))
    return completions


# -- the workload -------------------------------------------------------------------------------------------

def load_task(path: Path) -> tuple[TaskSpec, list[str]]:
    """The task's spec (instruction, labels, few-shot examples) and its validation inputs."""
    data = BenchTask.load(path).data
    task = TaskSpec.model_validate({
        "type": data["task_type"], "instruction": data["instruction"],
        "examples": [{"input": e["input"], "output": e["output"]} for e in data["examples"]],
        **({"labels": data["labels"]} if data.get("labels") else {}),
    })
    return task, [row["input"] for row in data.get("validation") or data["test"]]


def input_prompts(backend: TransformersBackend, task: TaskSpec, count: int, pool: Sequence[str] = ()) -> list[str]:
    """Input-generation prompts as the stage builds them in a round: the gold inputs shuffled once for the
    round, a pseudo-label per prompt, and 1 to 10 inputs of `pool` per prompt (a later round; the first round's
    pool is empty)."""
    rng = random.Random(0)
    prompts = []
    gold = rng.sample([e.input for e in task.examples], len(task.examples))
    for _ in range(count):
        label = rng.choice(task.labels) if task.labels else None
        shown = rng.sample(list(pool), rng.randint(1, min(10, len(pool)))) if pool else []
        message = input_generation_prompt(task.instruction, gold, shown, label)
        prompts.append(backend.render_chat([{"role": "user", "content": message}], INPUT_RESPONSE_PREFIX))
    return prompts


def measure(backend: TransformersBackend, path: str, prompts: list[str], params: SamplingParams) -> dict:
    run = legacy_generate if path == "old" else TransformersBackend.generate
    before = (backend.throughput.generated_tokens, backend.throughput.prompt_tokens)
    started = time.perf_counter()
    out = run(backend, prompts, params)
    seconds = time.perf_counter() - started
    generated = backend.throughput.generated_tokens - before[0]
    prompt_tokens = backend.throughput.prompt_tokens - before[1]
    return {"path": path, "prompts": len(prompts), "completionsKept": sum(map(len, out)),
            "generatedTokens": generated, "promptTokens": prompt_tokens, "seconds": round(seconds, 2),
            "tokensPerSecond": round(generated / seconds, 1), "promptTokensPerSecond": round(prompt_tokens / seconds, 1),
            "answers": sorted({c.text.strip() for group in out for c in group})[:5],
            "tops": [Counter(c.text.strip() for c in group).most_common(1)[0][0] if group else "" for group in out]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", type=Path, default=DEFAULT_TASK)
    parser.add_argument("--inputs", type=int, default=8)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--keep", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=32, help="annotation max new tokens")
    parser.add_argument("--min-tokens", type=int, default=0, help="annotation min new tokens (fixed-length decoding)")
    parser.add_argument("--input-prompts", type=int, default=10)
    parser.add_argument("--input-tokens", type=int, default=64, help="input generation max new tokens")
    parser.add_argument("--pool", type=int, default=0,
                        help="input generation as in a later round: a pool of this many earlier inputs (0: round 1)")
    parser.add_argument("--workloads", nargs="+", choices=["annotation", "inputGeneration"],
                        default=["annotation", "inputGeneration"])
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per batch (default: the backend's)")
    parser.add_argument("--path", choices=["both", "old", "new"], default="both")
    parser.add_argument("--length-stop", action="store_true",
                        help="input generation on the new path without and with the length filter's stop")
    parser.add_argument("--mixed", action="store_true",
                        help="the new path with model.dtype float32, then mixed (linear layers in bf16)")
    parser.add_argument("--quick", action="store_true",
                        help="2 inputs, 8 samples keep 4, 2 input prompts, 8 new tokens (< 1 min on 2 idle cores)")
    args = parser.parse_args()
    if args.quick:
        args.inputs, args.samples, args.keep, args.input_prompts = 2, 8, 4, 2
        args.max_tokens = args.input_tokens = 8
    paths = ["old", "new"] if args.path == "both" else [args.path]

    load = time.perf_counter()
    backend = TransformersBackend(locate(ModelSpec()), batch_size=args.batch_size)
    load = time.perf_counter() - load
    task, inputs = load_task(args.task)
    annotation = [backend.render_chat(few_shot_messages(task, text)) for text in inputs[: args.inputs]]
    annotate = SamplingParams(n=args.keep, best_of=args.samples, temperature=0.2, top_k=10,
                              max_tokens=args.max_tokens, min_tokens=args.min_tokens, seed=0)
    generation = input_prompts(backend, task, args.input_prompts, inputs[args.inputs : args.inputs + args.pool])
    generate = SamplingParams(temperature=RELEASED_INPUT_TEMPERATURE[TaskType(task.type)], top_k=40,
                              max_tokens=args.input_tokens, stop=INPUT_STOP, seed=0)
    for path in paths:  # warm-up: first-call allocations, stop-string tables
        measure(backend, path, generation[:1], SamplingParams(max_tokens=2, stop=INPUT_STOP))

    if args.length_stop and not args.mixed:
        compare_length_stop(backend, task, generation, generate)
        return
    if args.length_stop:
        generate = dataclasses.replace(generate, max_chars=length_stop_limit(task))
    workloads = {"annotation": (annotation, annotate), "inputGeneration": (generation, generate)}
    if args.mixed:
        chosen = {name: workloads[name] for name in args.workloads}
        compare_mixed(backend, TransformersBackend(locate(ModelSpec(dtype=Dtype.MIXED)), Dtype.MIXED,
                                                   batch_size=args.batch_size), chosen)
        return
    rows = {name: [measure(backend, p, *workloads[name]) for p in paths] for name in args.workloads}
    print(json.dumps({
        "model": "SmolLM2-135M-Instruct (bundled)", "device": str(backend.device), "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "modelLoadSeconds": round(load, 2),
        "task": args.task.stem, "samples": args.samples, "keep": args.keep,
        "annotationPromptTokens": [backend.count_tokens(p) for p in annotation],
        "inputPromptTokens": [backend.count_tokens(p) for p in generation], "results": rows,
    }, indent=2))
    print_table(rows, "path")
    if len(paths) == 2:
        print()
        for name in ("inputGeneration", "annotation"):  # the last line is the annotation speed-up
            if name in rows:
                old, new = rows[name]
                label = "speedup" if name == "annotation" else "input generation speedup"
                print(f"{label}: {old['seconds'] / new['seconds']:.2f}x")


def print_table(rows: dict[str, list[dict]], column: str) -> None:
    """The measured rows as a Markdown table; `column` names what each row's `path` field holds."""
    print(f"\n| workload | {column} | wall s | tokens/s | prompt tokens/s |\n| --- | --- | ---: | ---: | ---: |")
    for workload, measured in rows.items():
        for row in measured:
            print(f"| {workload} | {row['path']} | {row['seconds']} | {row['tokensPerSecond']} "
                  f"| {row['promptTokensPerSecond']} |")


def _band(task: TaskSpec) -> LengthBand:
    defaults = LengthFilterSpec()
    return length_band([e.input for e in task.examples], defaults.sigmas, defaults.min_spread)


def length_stop_limit(task: TaskSpec) -> int:
    """The `max_chars` the stage sets for `task` with the default input length filter."""
    return input_char_limit(_band(task))


def compare_mixed(exact: TransformersBackend, mixed: TransformersBackend,
                  workloads: dict[str, tuple[list[str], SamplingParams]]) -> None:
    """The same workloads on a float32 and a mixed-precision load of the model."""
    measure(mixed, "new", workloads[next(iter(workloads))][0][:1], SamplingParams(max_tokens=2, stop=INPUT_STOP))
    rows: dict[str, list[dict]] = {}
    tops: list[list[str]] = []
    for dtype, backend in (("float32", exact), ("mixed", mixed)):
        for name, (prompts, params) in workloads.items():
            row = measure(backend, "new", prompts, params)
            row["path"] = dtype
            rows.setdefault(name, []).append(row)
            top = row.pop("tops")
            if name == "annotation":
                tops.append(top)
    print(json.dumps({"results": rows}, indent=2))
    print_table(rows, "dtype")
    if len(tops) == 2:
        same = sum(a == b for a, b in zip(*tops))
        print(f"\nannotated inputs whose most frequent answer is the same: {same} of {len(tops[0])}")
    for name, (exact_row, mixed_row) in rows.items():
        print(f"{name}: {exact_row['seconds'] / mixed_row['seconds']:.2f}x")
    total = [sum(measured[i]["seconds"] for measured in rows.values()) for i in (0, 1)]
    print(f"mixed precision speedup: {total[0] / total[1]:.2f}x")


def compare_length_stop(backend: TransformersBackend, task: TaskSpec, prompts: list[str], params: SamplingParams
                        ) -> None:
    """Input generation without and with `max_chars` at the length band."""
    band = _band(task)
    length_filter = LengthFilter(band)
    stopped = dataclasses.replace(params, max_chars=input_char_limit(band))
    rows, seconds = [], []
    for variant in (params, stopped):
        before = backend.throughput.generated_tokens
        started = time.perf_counter()
        out = backend.generate(prompts, variant)
        texts = [extract_input(c.text) for group in out for c in group]
        seconds.append(time.perf_counter() - started)
        rows.append({"maxChars": variant.max_chars, "seconds": round(seconds[-1], 2),
                     "generatedTokens": backend.throughput.generated_tokens - before,
                     "keptByLengthFilter": sum(length_filter.reason(t) is None for t in texts)})
    print(json.dumps({"band": [round(band.low), round(band.high)], "prompts": len(prompts), "results": rows},
                     indent=2))
    print(f"length stop speedup: {seconds[0] / seconds[1]:.2f}x")


if __name__ == "__main__":
    main()
