"""Training throughput of the `train` stage: tokens per second (prompt + output tokens processed), LoRA
and full fine-tuning, on the bundled model.

    .venv/bin/python benchmarks/training_throughput.py [--examples 32] [--batch-sizes 4 8] [--methods lora full]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from selfguide.devices import resolve_device
from selfguide.models import locate
from selfguide.spec import Example, ModelSpec, TaskSpec, TrainingSpec
from selfguide.training import train

TASK = TaskSpec(
    type="classification",
    instruction="Decide whether the reviewer is happy with the product: positive or negative.",
    labels=["positive", "negative"],
    examples=[Example(input="The battery lasts all day.", output="positive"),
              Example(input="It broke after two days.", output="negative")],
)


def examples(count: int) -> list[Example]:
    words = ["great", "awful", "sturdy", "flimsy", "fast", "slow", "bright", "dim"]
    return [Example(input=f"The {words[i % 8]} product number {i} arrived {'on time' if i % 3 else 'late'}.",
                    output="positive" if i % 2 == 0 else "negative") for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--methods", nargs="+", default=["lora", "full"])
    args = parser.parse_args()
    model = ModelSpec()
    location = locate(model)
    data = examples(args.examples)
    rows = []
    for method in args.methods:
        for batch_size in args.batch_sizes:
            spec = TrainingSpec(method=method, epochs=1, batch_size=batch_size)
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                result = train(location, model, TASK, spec, data, Path(tmp), Path(tmp) / "ckpt", model.name)
                assert result is not None  # a single process is rank 0
                wall = time.perf_counter() - start
            rows.append({"method": method, "batchSize": batch_size, "examples": result.examples,
                         "steps": result.steps, "tokens": result.tokens, "trainSeconds": round(result.seconds, 2),
                         "tokensPerSecond": round(result.tokens_per_second, 1), "wallSeconds": round(wall, 2),
                         "trainableParameters": result.trainable_parameters})
    print(json.dumps({"model": "SmolLM2-135M-Instruct (bundled)", "device": str(resolve_device()),
                      "threads": torch.get_num_threads(), "results": rows}, indent=2))
    print("\n| method | batch size | tokens/s | trainable parameters |\n| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['method']} | {r['batchSize']} | {r['tokensPerSecond']} | {r['trainableParameters']:,} |")


if __name__ == "__main__":
    main()
