"""vLLM's offline engine on an annotation-shaped workload: 20 prompts of 391 tokens sharing a ~370-token prefix,
n=20 samples each at temperature 0.7, exactly 16 new tokens per sample (6,400 tokens). Generated tokens per second
of wall time, engine start excluded; the engine arguments are the backend's own (`engine_args`).

    .venv/bin/python -m benchmarks.vllm_throughput [--dtype float32|bfloat16] [--seeded] [--reserved-cpus 0|1]
        [--eager]

`--eager` runs the model without torch.compile (what a short stage does on a CPU: `vllm_backend.compiles`);
compare its engine start and tokens per second with a run without it.

docs/performance.md ("vLLM on CPU") quotes its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--seeded", action="store_true", help="a seed per request, as the stages send")
    parser.add_argument("--reserved-cpus", type=int, default=0, help="cores vLLM keeps for its scheduler")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--eager", action="store_true", help="no torch.compile (a faster start, slower decoding)")
    args = parser.parse_args()
    os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = str(args.reserved_cpus)
    import torch
    from vllm import LLM, SamplingParams, TokensPrompt

    from selfguide.engine.backends.vllm_backend import context_length, engine_args
    from selfguide.engine.models import locate
    from selfguide.spec import ModelSpec
    from selfguide.spec.model import Dtype

    location = locate(ModelSpec())
    platform = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    llm = LLM(**engine_args(location, Dtype(args.dtype), platform=platform,
                            max_model_len=context_length(location), compiled=not args.eager))
    load = time.perf_counter() - started
    tokenizer = llm.get_tokenizer()
    prefix = " ".join(f"Example {i}: the quick brown fox jumps over the lazy dog." for i in range(30))
    ids = [tokenizer(f"{prefix} Question {i}: what is {i} plus {i}?")["input_ids"][:391] for i in range(20)]
    for repeat in range(args.repeats):
        params = [SamplingParams(n=20, temperature=0.7, max_tokens=16, min_tokens=16,
                                 seed=k if args.seeded else None) for k in range(len(ids))]
        started = time.perf_counter()
        outputs = llm.generate([TokensPrompt(prompt_token_ids=i) for i in ids], params, use_tqdm=False)
        seconds = time.perf_counter() - started
        tokens = sum(len(c.token_ids) for o in outputs for c in o.outputs)
        print(json.dumps({"dtype": args.dtype, "seeded": args.seeded, "reservedCpus": args.reserved_cpus,
                          "eager": args.eager,
                          "repeat": repeat, "loadSeconds": round(load, 1), "tokens": tokens,
                          "tokensPerSecond": round(tokens / seconds, 1)}), flush=True)


if __name__ == "__main__":
    main()
