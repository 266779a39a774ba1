"""Generation throughput of the transformers backend: batched versus one prompt at a time.

    .venv/bin/python benchmarks/generation_throughput.py [--prompts 16] [--tokens 64] [--batch-sizes 1 4 8 16]
                                                         [--prompt selfguide|short]

Every completion is forced to exactly --tokens new tokens (min = max), so each configuration does the
same work; the figure is generated tokens per second of wall time, model load excluded.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from selfguide.engine.backends.base import SamplingParams
from selfguide.engine.backends.transformers_backend import TransformersBackend
from selfguide.engine.models import locate
from selfguide.prompts import INPUT_RESPONSE_PREFIX, input_generation_prompt
from selfguide.spec import ModelSpec

GOLD = [
    "The battery lasts all day and the screen is gorgeous.",
    "It broke after two days and support never answered.",
    "Great value for the price, I would buy it again.",
]


def prompts(backend: TransformersBackend, count: int, kind: str) -> list[str]:
    """`selfguide`: the real input-generation prompt (~500 tokens, prefill-heavy); `short`: a one-line chat
    prompt (~40 tokens), where decoding dominates."""
    if kind == "short":
        return [backend.render_chat([{"role": "user", "content": f"Write review number {i} of a product."}])
                for i in range(count)]
    instruction = "Decide whether the reviewer of a product is happy with it: positive or negative."
    return [
        backend.render_chat([{"role": "user", "content": input_generation_prompt(
            instruction, GOLD[i % 3:] + GOLD[: i % 3], [], ["positive", "negative"][i % 2])}], INPUT_RESPONSE_PREFIX)
        for i in range(count)
    ]


def measure(backend: TransformersBackend, batch: list[str], batch_size: int, tokens: int) -> dict:
    backend.batch_size = batch_size
    params = SamplingParams(temperature=1.0, top_k=40, max_tokens=tokens, min_tokens=tokens, seed=0)
    start = time.perf_counter()
    out = backend.generate(batch, params, desc=f"batch {batch_size}")
    seconds = time.perf_counter() - start
    generated = sum(c.tokens for group in out for c in group)
    return {"batchSize": batch_size, "prompts": len(batch), "tokens": generated, "seconds": round(seconds, 2),
            "tokensPerSecond": round(generated / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--prompt", choices=["selfguide", "short"], default="selfguide")
    args = parser.parse_args()
    load = time.perf_counter()
    backend = TransformersBackend(locate(ModelSpec()))
    load = time.perf_counter() - load
    batch = prompts(backend, args.prompts, args.prompt)
    measure(backend, batch[:2], 2, 4)  # warm-up
    rows = [measure(backend, batch, size, args.tokens) for size in args.batch_sizes]
    base = rows[0]["tokensPerSecond"]
    for row in rows:
        row["speedup"] = round(row["tokensPerSecond"] / base, 2)
    print(json.dumps({
        "model": "SmolLM2-135M-Instruct (bundled)", "device": str(backend.device),
        "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
        "modelLoadSeconds": round(load, 2), "prompt": args.prompt,
        "promptTokens": backend.count_tokens(batch[0]), "newTokensPerPrompt": args.tokens, "results": rows,
    }, indent=2))
    print("\n| batch size | tokens/s | speed-up |\n| ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['batchSize']} | {row['tokensPerSecond']} | {row['speedup']}x |")


if __name__ == "__main__":
    main()
