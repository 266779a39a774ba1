"""Label-likelihood scoring (`score_answers`, what likelihood annotation and rank-classification evaluation run)
on the bundled model with the transformers backend, this tree against another checkout, in one run.

    git worktree add /tmp/scoring-base <commit>
    .venv/bin/python -m benchmarks.scoring_throughput --baseline-tree /tmp/scoring-base [--prompts 80] [--rounds 2]

Each measurement runs in a child process whose `selfguide` is imported from one tree (PYTHONPATH), alternating
between the trees for `--rounds` rounds so machine noise falls on both: the prompts are the demo's 40 evaluation
reviews in its few-shot chat (repeated to `--prompts`), every label scored. Prints a JSON line per measurement and
the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "sentiment-classification.yaml"


def measure(prompts: int) -> dict[str, float]:
    """One timing in this process: load the model, score every label of `prompts` prompts (twice: the first call
    also warms up)."""
    from selfguide.engine.backends import open_backend
    from selfguide.manifest import load_manifest
    from selfguide.prompts import few_shot_messages
    from selfguide.spec.generation import Backend

    spec = load_manifest(DEMO).spec
    assert spec.evaluation is not None and spec.evaluation.examples and spec.task.labels
    inputs = [e.input for e in spec.evaluation.examples]
    inputs = (inputs * (prompts // len(inputs) + 1))[:prompts]
    backend = open_backend(spec.model, spec.generation.model_copy(update={"backend": Backend.TRANSFORMERS}), None)
    rendered = [backend.render_chat(few_shot_messages(spec.task, text)) for text in inputs]
    backend.score_answers(rendered[:4], spec.task.labels)
    started = time.perf_counter()
    backend.score_answers(rendered, spec.task.labels)
    seconds = time.perf_counter() - started
    backend.close()
    return {"prompts": prompts, "seconds": round(seconds, 2), "promptsPerSecond": round(prompts / seconds, 2)}


def child(tree: Path, prompts: int) -> dict[str, float]:
    env = os.environ | {"PYTHONPATH": str(tree)}
    code = f"import json, benchmarks.scoring_throughput as b; print(json.dumps(b.measure({prompts})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-tree", type=Path, required=True, help="a checkout of the code to compare with")
    parser.add_argument("--prompts", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    # the baseline tree runs this file's measure(): give it this file
    (args.baseline_tree / "benchmarks" / Path(__file__).name).write_text(Path(__file__).read_text())
    seconds: dict[str, list[float]] = {"baseline": [], "this tree": []}
    for _ in range(args.rounds):
        for name, tree in (("baseline", args.baseline_tree), ("this tree", REPO)):
            result = child(tree, args.prompts)
            seconds[name].append(result["seconds"])
            print(json.dumps({"tree": name} | result), flush=True)
    base, new = (statistics.median(seconds[name]) for name in ("baseline", "this tree"))
    print(f"median seconds for {args.prompts} prompts x 2 labels: baseline {base:.2f}, this tree {new:.2f} "
          f"({base / new:.2f}x)")


if __name__ == "__main__":
    main()
