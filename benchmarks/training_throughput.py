"""Training throughput of the `train` stage: tokens per second (prompt + output tokens processed), LoRA
and full fine-tuning, on the bundled model, with the peak memory of the process.

    .venv/bin/python benchmarks/training_throughput.py [--examples 32] [--batch-sizes 4 8] [--methods lora full]
        [--task ../shared/benchmarks/sni/TASK.json] [--gradient-checkpointing]

By default a short sentiment task; `--task` trains on a Super-NaturalInstructions task file instead (its
instruction and few-shot examples make the prompt, its test items are the training examples), whose long
prompts are what the bench trains on. Peak memory is the process's high-water mark (CUDA: allocated by
torch), so it covers every configuration run so far: run one configuration per call to compare peaks.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from selfguide.engine.devices import resolve_device
from selfguide.engine.models import locate
from selfguide.engine.trainer import train
from selfguide.experiments.bench import BenchTask, build_job
from selfguide.spec import Example, ModelSpec, TaskSpec, TrainingSpec

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


def sni_task(path: Path, count: int) -> tuple[TaskSpec, list[Example]]:
    """A task file's task, and its first `count` test items as training examples."""
    task = BenchTask.load(path)
    spec = build_job(task, path, {}).spec.task  # the evaluation path is not read here
    return spec, [Example(input=r["input"], output=r["output"]) for r in task.data["test"][:count]]


def peak_memory_mib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--methods", nargs="+", default=["lora", "full"])
    parser.add_argument("--task", type=Path, help="a Super-NaturalInstructions-style task file")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    model = ModelSpec()
    location = locate(model)
    task, data = sni_task(args.task, args.examples) if args.task else (TASK, examples(args.examples))
    rows = []
    for method in args.methods:
        for batch_size in args.batch_sizes:
            spec = TrainingSpec(method=method, epochs=1, batch_size=batch_size,
                                gradient_checkpointing=args.gradient_checkpointing)
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                result = train(location, model, task, spec, data, Path(tmp), Path(tmp) / "ckpt", model.name)
                assert result is not None  # a single process is rank 0
                wall = time.perf_counter() - start
            rows.append({"method": method, "batchSize": batch_size, "gradientCheckpointing": args.gradient_checkpointing,
                         "examples": result.examples,
                         "steps": result.steps, "tokens": result.tokens, "trainSeconds": round(result.seconds, 2),
                         "tokensPerSecond": round(result.tokens_per_second, 1), "wallSeconds": round(wall, 2),
                         "trainableParameters": result.trainable_parameters,
                         "peakMemoryMiB": round(peak_memory_mib())})
    print(json.dumps({"model": "SmolLM2-135M-Instruct (bundled)", "device": str(resolve_device()),
                      "task": args.task.stem if args.task else "sentiment (short prompts)",
                      "threads": torch.get_num_threads(), "results": rows}, indent=2))
    print("\n| method | batch size | tokens/s | trainable parameters | peak memory (MiB) |\n"
          "| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['method']} | {r['batchSize']} | {r['tokensPerSecond']} | {r['trainableParameters']:,} | "
              f"{r['peakMemoryMiB']} |")


if __name__ == "__main__":
    main()
