"""GPU generation throughput of the transformers backend on a 7B-shaped Llama with random weights, against
the memory-bandwidth roofline, plus the model load time a stage pays.

    python benchmarks/gpu_generation.py [--shape 7b] [--batch-sizes 1 8 32 64 128] [--prompt-tokens 256]
                                        [--new-tokens 128] [--bandwidth-gbs auto]

Roofline: each decode step reads every weight once and the KV cache of the batch, so
tokens/s <= batch / ((weight bytes + KV bytes) / bandwidth). Runs on CPU too (use --shape tiny), but the
figures in docs/performance.md are only meaningful on a GPU.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmarks.random_model import random_llama
from selfguide.engine.backends.base import SamplingParams
from selfguide.engine.backends.transformers_backend import TransformersBackend
from selfguide.engine.batching import kv_bytes_per_token
from selfguide.engine.models import ModelLocation
from selfguide.spec import Dtype

PEAK_BANDWIDTH_GBS = {"H100": 3350, "H200": 4800, "A100": 2039, "L40S": 864, "A10G": 600}


def bandwidth_gbs(requested: str) -> float:
    if requested != "auto":
        return float(requested)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    return next((v for k, v in PEAK_BANDWIDTH_GBS.items() if k in name), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="7b")
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/selfguide-bench-model"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64, 128])
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--bandwidth-gbs", default="auto")
    args = parser.parse_args()
    directory, created = random_llama(args.shape, args.model_dir / args.shape)
    start = time.perf_counter()
    backend = TransformersBackend(ModelLocation(str(directory)), Dtype.AUTO)
    load = time.perf_counter() - start
    weights = sum(p.numel() * p.element_size() for p in backend.model.parameters())
    kv = kv_bytes_per_token(backend.model.config, next(backend.model.parameters()).element_size())
    bandwidth = bandwidth_gbs(args.bandwidth_gbs) * 1e9
    prompt = "selfguide " * (args.prompt_tokens // 2)
    params = SamplingParams(temperature=1.0, top_k=40, max_tokens=args.new_tokens, min_tokens=args.new_tokens, seed=0)
    backend.batch_size = 1
    backend.generate([prompt], SamplingParams(max_tokens=4, min_tokens=4, temperature=0.0))  # warm-up
    rows = []
    for batch in args.batch_sizes:
        backend.batch_size = batch
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        out = backend.generate([prompt] * batch, params)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        tokens = sum(c.tokens for group in out for c in group)
        context = args.prompt_tokens + args.new_tokens / 2  # mean KV length during decoding
        roofline = batch / ((weights + batch * context * kv) / bandwidth) if bandwidth else None
        rows.append({"batch": batch, "tokensPerSecond": round(tokens / seconds, 1),
                     "rooflineTokensPerSecond": round(roofline, 1) if roofline else None,
                     "ofRoofline": round(tokens / seconds / roofline, 3) if roofline else None,
                     "peakMemoryGiB": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                     if torch.cuda.is_available() else None})
    print(json.dumps({"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                      "shape": args.shape, "weightsGiB": round(weights / 2**30, 2), "modelCreateSeconds":
                      round(created, 1), "modelLoadSeconds": round(load, 2), "bandwidthGBs": bandwidth / 1e9,
                      "promptTokens": args.prompt_tokens, "newTokens": args.new_tokens, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
