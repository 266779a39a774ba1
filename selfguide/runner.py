"""The stage runner: run a stage into its own directory of the work dir, atomically, at most once per config.

Each stage directory (see `selfguide.workdir`) holds a `manifest.json` with the stage's config hash, timings
and a summary; a stage whose manifest matches the current config is complete and is skipped.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from selfguide import __version__
from selfguide.artifacts import MANIFEST, atomic_dir, atomic_write_json, config_hash, read_json
from selfguide.spec import SelfGuideJobSpec

log = logging.getLogger(__name__)

STAGES = ("generate", "train", "evaluate")
STAGE_INPUTS = {
    "generate": ("task", "model", "generation"),
    "train": ("task", "model", "generation", "training"),
    "evaluate": ("task", "model", "generation", "training", "evaluation"),
}
"""The spec sections each stage's output depends on."""

StageFunction = Callable[[SelfGuideJobSpec, Path, Path], dict[str, Any]]
"""(spec, workdir, staging dir) -> summary. Reads earlier stages from workdir, writes into staging."""


def stage_config(spec: SelfGuideJobSpec, stage: str) -> dict[str, Any]:
    """The parts of the spec a stage's output depends on (cluster settings never count)."""
    if stage not in STAGE_INPUTS:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    parts = STAGE_INPUTS[stage]
    manifest = spec.to_manifest()
    manifest.get("model", {}).pop("hfTokenSecret", None)  # where the token comes from changes no output
    manifest.get("training", {}).pop("gradientCheckpointing", None)  # memory for compute, same model
    return {part: manifest.get(part) for part in parts}


def stage_hash(spec: SelfGuideJobSpec, stage: str) -> str:
    return config_hash({"selfguide": __version__, **stage_config(spec, stage)})


def stages_for(spec: SelfGuideJobSpec) -> list[str]:
    """The stages this spec runs, in order (evaluation only when an evaluation set is given)."""
    return [s for s in STAGES if s != "evaluate" or spec.evaluation is not None]


def completed_manifest(spec: SelfGuideJobSpec, workdir: Path, stage: str) -> dict[str, Any] | None:
    """The stage's manifest when the stage already ran to completion with this config."""
    path = workdir / stage / MANIFEST
    try:
        manifest = read_json(path)
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("configHash") == stage_hash(spec, stage) else None


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    skipped: bool
    seconds: float
    summary: dict[str, Any]


def stage_function(stage: str) -> StageFunction:
    """The implementation of a stage; imported lazily so `validate` never loads torch."""
    if stage == "generate":
        from selfguide.stages.generate.stage import generate_stage

        return generate_stage
    if stage == "train":
        from selfguide.stages.train.stage import train_stage

        return train_stage
    if stage == "evaluate":
        from selfguide.stages.evaluate.stage import evaluate_stage

        return evaluate_stage
    raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")


def run_stage(spec: SelfGuideJobSpec, workdir: Path, stage: str, force: bool = False) -> StageOutcome:
    """Run one stage unless it already completed with the same config; the result appears atomically."""
    if not force and (done := completed_manifest(spec, workdir, stage)) is not None:
        log.info("stage %s already complete (config %s); skipping", stage, done["configHash"])
        return StageOutcome(stage, True, 0.0, done.get("summary", {}))
    function = stage_function(stage)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    atomic_write_json(workdir / "spec.json", spec.to_manifest())
    with atomic_dir(workdir / stage) as staging:
        summary = function(spec, workdir, staging)
        seconds = time.perf_counter() - clock
        atomic_write_json(staging / MANIFEST, {
            "stage": stage,
            "configHash": stage_hash(spec, stage),
            "selfguideVersion": __version__,
            "startedAt": started.isoformat(timespec="seconds"),
            "finishedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            "summary": summary,
        })
    release_memory()
    return StageOutcome(stage, False, seconds, summary)


def release_memory() -> None:
    """Give a finished stage's memory back to the system, so a process that runs several stages (`selfguide
    run`, `bench`, `sweep`) stays at the size of one: glibc keeps freed tensor buffers in its arenas."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
