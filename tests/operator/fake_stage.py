"""A test double of the ML work of `selfguide stage`, for operator tests that need many jobs or exact failures.

The operator runs it through its `SELFGUIDE_STAGE_COMMAND` setting, with the same arguments, environment and
termination-message protocol as the real command (`selfguide.contract`). It writes each stage's main artifact
(where the stage registry says) and reports the stage's result with the real result models.
Environment (set through the SelfGuideJob's `spec.pod.env`):
  FAKE_STAGE_SECONDS  how long each stage takes (default 0);
  FAKE_STAGE_STEPS    report progress this many times while it takes them (default 0), through the real
                      tracker and HTTP reporter (`selfguide.contract.progress`) when the operator asks for reports;
  FAKE_STAGE_GPUS     GPUs it reports for its cost (default 1: the operator's default per stage);
  FAKE_STAGE_SCORES   `<few-shot>,<SELF-GUIDE>`: the scores the evaluate stage reports (default 50,100); with
                      `spec.evaluation.gate` set it reports the gate's verdict on them (the real `judge`);
  FAKE_STAGE_FAIL     `<stage>:permanent` (exit 3) or `<stage>:retryable` (exit 1) to fail that stage;
                      `<stage>:leak` prints $HF_TOKEN and fails permanently with it in its error (a stage that
                      leaks a secret), `<stage>:crash` prints it and dies of an uncaught exception naming it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from selfguide.contract import termination
from selfguide.contract.errors import ExitCode
from selfguide.contract.progress import ProgressTracker, reporter_from_environment
from selfguide.contract.registry import stage
from selfguide.contract.results import (
    EvaluateResult,
    FunnelStep,
    GenerateResult,
    Metric,
    StageResult,
    TrainResult,
    judge,
)
from selfguide.contract.termination import TerminationMessage
from selfguide.manifest import load_manifest
from selfguide.spec import SelfGuideJobSpec
from selfguide.stages.publish import publish

RESULTS: dict[str, StageResult] = {
    "generate": GenerateResult(examples=8, candidates=12, dropped={"duplicate": 3, "too_long": 1},
                               generated_tokens=5120, tokens_per_second=256.0, funnel=[
                                   FunnelStep(step="inputs", entered=12, kept=9, dropped={"duplicate": 3}),
                                   FunnelStep(step="annotation", entered=9, kept=8, dropped={"too_long": 1})]),
    "train": TrainResult(examples=8, steps=2, epochs=1, first_loss=1.5, final_loss=1.25),
    "evaluate": EvaluateResult(metric=Metric.EXACT_MATCH, examples=2, baseline=50.0, finetuned=100.0, delta=50.0,
                               scores={"fewShotPrompting": 50.0, "selfGuide": 100.0}),
}
"""What each fake stage reports: the real result models, so the contract cannot drift."""


COUNTERS = {
    "generate": lambda step, steps: {"rounds_done": step, "rounds_total": steps, "inputs_generated": 3 * step},
    "train": lambda step, steps: {"step": step, "steps_total": steps, "loss": round(2.0 / step, 3)},
    "evaluate": lambda step, steps: {"items_scored": 2 * step, "items_total": 2 * steps},
}
"""What each fake stage reports at each of its FAKE_STAGE_STEPS steps (the counters of the real stage)."""


def result(stage_name: str, spec: SelfGuideJobSpec) -> StageResult:
    """The stage's scripted result; the evaluation's scores from $FAKE_STAGE_SCORES, judged by the real gate."""
    if stage_name != "evaluate" or "FAKE_STAGE_SCORES" not in os.environ:
        return RESULTS[stage_name]
    baseline, finetuned = (float(x) for x in os.environ["FAKE_STAGE_SCORES"].split(","))
    gate = spec.evaluation.gate if spec.evaluation else None
    return EvaluateResult(metric=Metric.EXACT_MATCH, examples=2, baseline=baseline, finetuned=finetuned,
                          delta=round(finetuned - baseline, 2),
                          scores={"fewShotPrompting": baseline, "selfGuide": finetuned},
                          gate=judge(gate.min_improvement, [baseline], [finetuned]) if gate else None)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["stage"])
    parser.add_argument("stage")
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    job = load_manifest(args.spec)
    seconds, steps = float(os.environ.get("FAKE_STAGE_SECONDS", "0")), int(os.environ.get("FAKE_STAGE_STEPS", "0"))
    reporter = reporter_from_environment(job.metadata.namespace or "default", job.metadata.name, args.stage)
    tracker = ProgressTracker(args.stage, [reporter] if reporter else [])
    started = time.monotonic()
    if steps:
        for step in range(1, steps + 1):
            time.sleep(seconds / steps)
            tracker.update(step / steps, **COUNTERS[args.stage](step, steps))
    else:
        time.sleep(seconds)
    wall = time.monotonic() - started
    gpus = int(os.environ.get("FAKE_STAGE_GPUS", "1"))
    if reporter is not None:
        reporter.close()
    failing, _, kind = os.environ.get("FAKE_STAGE_FAIL", "").partition(":")
    if failing == args.stage and kind in ("leak", "crash"):
        token = os.environ.get("HF_TOKEN", "")
        print(f"the hub refused token {token}", flush=True)
        if kind == "crash":
            raise RuntimeError(f"the hub refused token {token}")
        termination.write(TerminationMessage(stage=args.stage, ok=False, permanent=True,
                                             error=f"the hub refused token {token}"))
        return ExitCode.PERMANENT
    if failing == args.stage:
        permanent = kind == "permanent"
        termination.write(TerminationMessage(stage=args.stage, ok=False, permanent=permanent,
                                             error=f"fake {kind} failure of {job.metadata.name}"))
        return ExitCode.PERMANENT if permanent else ExitCode.RETRYABLE
    artifact = args.workdir / stage(args.stage).artifact(job.spec)
    marker = artifact / "adapter_config.json" if args.stage == "train" else artifact
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f'{{"job": "{job.metadata.name}"}}\n')
    reported = result(args.stage, job.spec).model_copy(
        update={"wall_seconds": round(wall, 3), "gpus": gpus, "gpu_seconds": round(gpus * wall, 3)})
    publish(job.spec, args.workdir, args.stage, reported, job.metadata.name, job.metadata.namespace or "default")
    summary = reported.model_dump(mode="json", by_alias=True)
    termination.write(TerminationMessage(stage=args.stage, ok=True, summary=summary))
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
