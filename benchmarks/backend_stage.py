"""The two engines side by side on real stage work: the `generate` stage of one task at the configured budget, and
the evaluation's few-shot pass over the task's test items, once per backend, in one run.

    .venv/bin/python -m benchmarks.backend_stage ../shared/benchmarks/sni-extra/task379_agnews_topic_classification.json \
        --config benchmarks/configs/paper.yaml --workdir runs/backend-stage [--backends vllm transformers]
        [--parts generate evaluate] [--max-eval 200]

Each part runs in a child process (`selfguide stage generate`, or this script's evaluation worker), so its wall
time includes loading the model (and starting vLLM's engine), and its peak memory is the resident memory of the
child and every process it starts (vLLM's engine core), sampled every 0.2 s. Prints a JSON line per run and a
Markdown table with the ratio of each backend's wall time to the last one's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from selfguide.experiments.bench import BenchTask, build_job, deep_merge, write_eval_split


def peak_tree_rss(process: subprocess.Popen[bytes], interval: float = 0.2) -> float:
    """Wait for `process`; the highest resident memory (GiB) it and its descendants held at once."""
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(interval)
    return peak / 2**30


def timed(command: list[str], log: Path) -> dict[str, Any]:
    started = time.perf_counter()
    with log.open("wb") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        peak = peak_tree_rss(child)
    if child.returncode:
        raise SystemExit(f"{' '.join(command)} failed (exit {child.returncode}); see {log}")
    return {"seconds": round(time.perf_counter() - started, 1), "peakGiB": round(peak, 2)}


def evaluate_worker(job_file: Path, items: int) -> None:
    """The evaluation's few-shot pass (base model, greedy) over `items` items, as the evaluate stage runs it."""
    from selfguide.manifest import load_manifest
    from selfguide.stages.backend import opened
    from selfguide.stages.evaluate.stage import load_eval_set, predict

    spec = load_manifest(job_file).spec
    assert spec.evaluation is not None
    examples = load_eval_set(spec.evaluation)[:items]
    with opened(spec, spec.evaluation.batch_size, 2 * len(examples)) as backend:
        answers = predict(backend, spec, examples, "few-shot prompting")
    print(json.dumps({"answers": len(answers), "nonEmpty": sum(bool(a) for a in answers)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("task", type=Path)
    parser.add_argument("--config", type=Path, action="append", default=[])
    parser.add_argument("--workdir", type=Path, default=Path("runs/backend-stage"))
    parser.add_argument("--backends", nargs="+", default=["vllm", "transformers"])
    parser.add_argument("--parts", nargs="+", default=["generate", "evaluate"], choices=["generate", "evaluate"])
    parser.add_argument("--max-eval", type=int, default=200)
    parser.add_argument("--evaluate-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evaluate_worker:
        evaluate_worker(args.evaluate_worker, args.max_eval)
        return
    task = BenchTask.load(args.task)
    overrides: dict[str, Any] = {}
    for config in args.config:
        overrides = deep_merge(overrides, yaml.safe_load(config.read_text(encoding="utf-8")) or {})
    rows = []
    for backend in args.backends:
        workdir = (args.workdir / backend).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        eval_path = write_eval_split(task, "test", workdir / "test.jsonl")
        job = build_job(task, eval_path, deep_merge(overrides, {"generation": {"backend": backend}}), args.max_eval)
        job_file = workdir / "job.yaml"
        job_file.write_text(yaml.safe_dump(job.to_camel_dict(), sort_keys=False), encoding="utf-8")
        for part in args.parts:
            command = ([sys.executable, "-m", "selfguide.cli", "stage", "generate", "--spec", str(job_file),
                        "--workdir", str(workdir)] if part == "generate" else
                       [sys.executable, "-m", "benchmarks.backend_stage", str(args.task), "--max-eval",
                        str(args.max_eval), "--evaluate-worker", str(job_file)])
            row: dict[str, Any] = {"task": task.name, "backend": backend, "part": part,
                                   **timed(command, workdir / f"{part}.log")}
            if part == "generate":
                record = json.loads((workdir / "generate" / "record.json").read_text(encoding="utf-8"))
                row |= {key: record["summary"].get(key) for key in ("examples", "candidates", "generatedTokens",
                                                                    "tokensPerSecond")}
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("\n| part | backend | wall time | ratio | peak memory (process tree) | kept examples |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for part in args.parts:
        runs = [r for r in rows if r["part"] == part]
        slowest = runs[-1]["seconds"]
        for r in runs:
            print(f"| {part} | {r['backend']} | {r['seconds'] / 60:.1f} min | {slowest / r['seconds']:.1f}x | "
                  f"{r['peakGiB']:.1f} GiB | {r.get('examples', '')} |")


if __name__ == "__main__":
    main()
