"""The stage runner: run a stage into its own directory of the work dir, atomically, at most once per input.

A stage's hash covers the spec sections it reads, the selfguide version and the record hashes of the
upstream stages it consumes; a stage whose record carries the current hash is complete and is skipped.
One process at a time works in a work directory (a lock file), and a stage's checkpoints are deleted only
after its directory has been committed.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

from filelock import FileLock, Timeout

from selfguide import __version__
from selfguide.artifacts import atomic_dir, atomic_write_json
from selfguide.contract.confighash import stage_hash
from selfguide.contract.errors import PermanentError, RetryableError
from selfguide.contract.layout import CHECKPOINTS_DIR, LOCK_FILE, RECORD_FILE, SPEC_FILE
from selfguide.contract.progress import ProgressTracker, Sink, tracking
from selfguide.contract.record import StageRecord, read_record
from selfguide.contract.registry import StageDefinition, load, stage, stages_for
from selfguide.contract.results import StageResult
from selfguide.spec import SelfGuideJobSpec
from selfguide.stages.context import StageContext

log = logging.getLogger(__name__)

StageFunction = Callable[[StageContext], StageResult]


def upstream_records(workdir: Path, definition: StageDefinition) -> dict[str, StageRecord]:
    """The records of the stages `definition` consumes; a missing one is a permanent error."""
    records = {name: read_record(workdir / name) for name in definition.after}
    missing = [name for name, record in records.items() if record is None]
    if missing:
        raise PermanentError(f"stage {definition.name} needs the output of stage {', '.join(missing)} in "
                             f"{workdir}: run it first")
    return cast(dict[str, StageRecord], records)


def record_hashes(records: Mapping[str, StageRecord]) -> dict[str, str]:
    """The hash of each upstream record, by stage: what a stage's own hash chains in."""
    return {name: record.record_hash for name, record in records.items()}


def current_hash(spec: SelfGuideJobSpec, workdir: Path, name: str) -> str | None:
    """The hash stage `name` would run with now, or None while an upstream stage has no record."""
    try:
        return _stage_state(spec, workdir, stage(name))[1]
    except PermanentError:
        return None


def completed_record(spec: SelfGuideJobSpec, workdir: Path, name: str) -> StageRecord | None:
    """The stage's record when it already ran to completion with this spec and the current upstream records."""
    try:
        return _stage_state(spec, workdir, stage(name))[2]
    except PermanentError:
        return None


@dataclass(frozen=True)
class StageOutcome:
    stage: str
    skipped: bool
    seconds: float
    """Spent now (0 when skipped); `record.seconds` is what the stage took when it ran."""
    result: StageResult
    record: StageRecord


@contextlib.contextmanager
def workdir_lock(workdir: Path) -> Iterator[None]:
    """Hold the work directory for this process; a second process fails at once instead of racing it."""
    workdir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(workdir / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RetryableError(f"work directory {workdir} is in use by another selfguide process; wait for it "
                             "to finish or choose another work directory") from None
    try:
        yield
    finally:
        lock.release()


def stage_function(definition: StageDefinition) -> StageFunction:
    """A stage's implementation."""
    return cast(StageFunction, load(definition.entry_point))


def preflight(spec: SelfGuideJobSpec) -> None:
    """Fail fast: the base model (every stage loads it) and each stage's own preflight (the evaluation set, for
    evaluate) are checked before the first stage does any work, so a missing one fails the job in seconds, not
    after generation and training. Raises PermanentError (exit code 3: never retried)."""
    from selfguide.engine.models import check_model

    check_model(spec.model)
    for definition in stages_for(spec):
        if definition.preflight is not None:
            load(definition.preflight)(spec)


def _stage_state(spec: SelfGuideJobSpec, workdir: Path,
                definition: StageDefinition) -> tuple[dict[str, StageRecord], str, StageRecord | None]:
    """The stage's upstream records, its hash in `workdir`, and its record if it already completed with that
    hash: the one definition of a current stage. Raises PermanentError while an upstream stage has no record."""
    upstream = upstream_records(workdir, definition)
    config = stage_hash(spec, definition.name, record_hashes(upstream))
    done = read_record(workdir / definition.name)
    return upstream, config, done if done is not None and done.config_hash == config else None


def checkpoint_dir(spec: SelfGuideJobSpec, workdir: Path, name: str) -> Path | None:
    """Where the stage keeps its resumable state on its next run in `workdir`; None when it already completed
    with these inputs."""
    _, config, done = _stage_state(spec, workdir, stage(name))
    return None if done else workdir / CHECKPOINTS_DIR / f"{name}-{config}"


def run_stage(spec: SelfGuideJobSpec, workdir: Path, name: str, force: bool = False,
              progress: Sequence[Sink] = ()) -> StageOutcome:
    """Run one stage unless it already completed with the same inputs; its directory appears atomically.
    `progress` receives the stage's live progress (`selfguide.contract.progress`)."""
    definition = stage(name)
    tracker = ProgressTracker(name, progress)
    with workdir_lock(workdir):
        upstream, config, done = _stage_state(spec, workdir, definition)
        if not force and done:
            log.info("stage %s already complete (hash %s); skipping", name, config)
            tracker.finish()
            return StageOutcome(name, True, 0.0, definition.result.model_validate(done.summary), done)
        function = stage_function(definition)
        if not definition.after:  # the job's first stage: check what later stages need before any work
            preflight(spec)
        checkpoints = workdir / CHECKPOINTS_DIR / f"{name}-{config}"
        started = datetime.now(UTC)
        clock = time.perf_counter()
        atomic_write_json(workdir / SPEC_FILE, spec.to_camel_dict())
        with atomic_dir(workdir / name) as staging:
            with tracking(tracker):
                result = function(StageContext(spec, workdir, staging, checkpoints, upstream))
            seconds = time.perf_counter() - clock
            result = with_cost(result, seconds)
            record = StageRecord(
                stage=name, config_hash=config, upstream=record_hashes(upstream),
                selfguide_version=__version__, started_at=started, finished_at=datetime.now(UTC),
                seconds=round(seconds, 3), summary=result.model_dump(mode="json", by_alias=True),
            )
            atomic_write_json(staging / RECORD_FILE, record.model_dump(mode="json", by_alias=True))
        shutil.rmtree(checkpoints, ignore_errors=True)  # only now: a crash before the commit keeps them
        with contextlib.suppress(OSError):  # the checkpoints folder itself, once no stage has any
            checkpoints.parent.rmdir()
    tracker.finish()
    release_memory()
    return StageOutcome(name, False, seconds, result, record)


def visible_gpus() -> int:
    """GPUs the stage could use: CUDA devices when the stage loaded torch and was not pinned to the CPU."""
    import os
    import sys

    if "torch" not in sys.modules or os.environ.get("SELFGUIDE_DEVICE", "").startswith("cpu"):
        return 0
    from selfguide.engine.devices import gpu_count

    return gpu_count()


def with_cost(result: StageResult, seconds: float, gpus: int | None = None) -> StageResult:
    """The result with what the stage cost: wall seconds, GPUs, GPU-seconds."""
    gpus = visible_gpus() if gpus is None else gpus
    return result.model_copy(update={"wall_seconds": round(seconds, 3), "gpus": gpus,
                                     "gpu_seconds": round(gpus * seconds, 3)})


def release_memory() -> None:
    """Give a finished stage's memory back to the system, so a process that runs several stages (`selfguide
    run`, `bench`, `sweep`) stays at the size of one: glibc keeps freed tensor buffers in its arenas."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
