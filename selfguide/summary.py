"""The short, human summary printed at the end of `selfguide run`."""

from __future__ import annotations

from pathlib import Path

import typer

from selfguide.workdir import FILTER_REPORT, TRAIN_DATA, trained_model_dir
from selfguide.runner import StageOutcome
from selfguide.spec import SelfGuideJob


def _describe(outcome: StageOutcome) -> str:
    s = outcome.summary
    if outcome.stage == "generate":
        dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(s.get("dropped", {}).items(), key=lambda x: -x[1]))
        return f"{s.get('examples', 0)} examples kept of {s.get('candidates', 0)} candidates" + (
            f" (dropped: {dropped})" if dropped else "")
    if outcome.stage == "train":
        return f"loss {s.get('firstLoss', float('nan')):.3f} -> {s.get('finalLoss', float('nan')):.3f}, " \
               f"{s.get('steps', 0)} steps"
    if outcome.stage == "evaluate":
        return (f"{s.get('metric', '?')}: few-shot {s.get('baseline', 0):.1f} -> "
                f"SELF-GUIDE {s.get('finetuned', 0):.1f} ({s.get('delta', 0):+.1f})")
    return ""


def print_run_summary(job: SelfGuideJob, workdir: Path, outcomes: list[StageOutcome]) -> None:
    typer.echo(f"\nSelfGuideJob {job.metadata.name}: done ({workdir})")
    for outcome in outcomes:
        timing = "already complete" if outcome.skipped else f"{outcome.seconds:.0f}s"
        typer.echo(f"  {outcome.stage:<9} {timing:>16}  {_describe(outcome)}")
    trained = trained_model_dir(job.spec.training.method)
    typer.echo(f"  artifacts: {workdir}/{TRAIN_DATA}, {workdir}/{FILTER_REPORT}"
               + (f", {workdir}/{trained}/" if any(o.stage == 'train' for o in outcomes) else ""))
