"""What the runner hands a stage: the spec, where to read and write, and the upstream records it consumes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from selfguide.contract.record import StageRecord
from selfguide.spec import SelfGuideJobSpec


@dataclass(frozen=True)
class StageContext:
    spec: SelfGuideJobSpec
    workdir: Path
    """The job's work directory: upstream artifacts are read from here (see `selfguide.contract.layout`)."""
    output: Path
    """An empty staging directory: everything the stage writes goes here; it replaces the stage's directory
    in one rename once the stage returns."""
    checkpoints: Path
    """Resumable in-stage state (keyed by the stage hash): survives a crash, deleted once the stage commits."""
    upstream: Mapping[str, StageRecord]
    """The records of the upstream stages this run consumes, by stage name."""

    def artifact(self, relative: str) -> Path:
        """An upstream artifact, by its path relative to the work directory."""
        return self.workdir / relative
