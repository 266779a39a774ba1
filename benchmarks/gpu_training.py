"""LoRA training throughput and peak memory of the `train` stage on a 7B-shaped Llama with random weights.

    python benchmarks/gpu_training.py [--shape 7b] [--examples 64] [--batch-sizes 1 4 8] [--seq-tokens 512]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.random_model import random_llama
from selfguide.engine.models import ModelLocation
from selfguide.engine.trainer import train
from selfguide.spec import Example, ModelSpec, TaskSpec, TrainingSpec

TASK = TaskSpec(type="generation", instruction="Continue the text.", examples=[Example(input="a", output="b")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="7b")
    parser.add_argument("--model-dir", type=Path, default=Path("/tmp/selfguide-bench-model"))
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--seq-tokens", type=int, default=512)
    args = parser.parse_args()
    directory, _ = random_llama(args.shape, args.model_dir / args.shape)
    words = args.seq_tokens // 2
    data = [Example(input=f"item {i} " + "lorem " * words, output="ipsum " * 16) for i in range(args.examples)]
    rows = []
    for batch in args.batch_sizes:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = train(ModelLocation(str(directory)), ModelSpec(name=str(directory)), TASK,
                           TrainingSpec(epochs=1, batch_size=batch, max_length=args.seq_tokens + 64),
                           data, Path(tmp), Path(tmp) / "ckpt", str(directory))
            wall = time.perf_counter() - start
        assert result is not None
        rows.append({"batch": batch, "tokensPerSecond": round(result.tokens_per_second, 1),
                     "trainSeconds": round(result.seconds, 1), "wallSeconds": round(wall, 1),
                     "peakMemoryGiB": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                     if torch.cuda.is_available() else None,
                     "trainableParameters": result.trainable_parameters})
    print(json.dumps({"device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                      "shape": args.shape, "seqTokens": args.seq_tokens, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
