"""The stage record: `<stage>/record.json`, written last into a stage's directory, which then appears whole.

A stage is complete for a spec when its record's `configHash` is that spec's hash for the stage and its
`upstream` names the records of its upstream stages as they are now. Every record has a hash of its own
(`record_hash`), so a rerun of `generate`, even with the same configuration, invalidates `train` and
`evaluate`.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError

from selfguide.artifacts import config_hash
from selfguide.contract.layout import RECORD_FILE
from selfguide.spec.base import SpecModel

Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


class StageRecord(SpecModel):
    """What a completed stage ran with and what it reported."""

    stage: str
    config_hash: Hash
    """Hash of the spec sections the stage reads, the selfguide version and the upstream record hashes."""
    upstream: dict[str, Hash] = Field(default_factory=dict)
    """The record hash of every upstream stage this stage consumed."""
    selfguide_version: str
    started_at: datetime
    finished_at: datetime
    seconds: float
    summary: dict[str, Any]
    """The stage's result (camelCase), as its result model dumps it."""

    @property
    def record_hash(self) -> str:
        """Identifies this run of the stage: changes whenever the stage runs again."""
        return config_hash(self.model_dump(mode="json", by_alias=True))


def read_record(stage_dir: Path) -> StageRecord | None:
    """The record in a stage directory, or None when there is none (or an unreadable one: the stage reruns)."""
    try:
        return StageRecord.model_validate_json((stage_dir / RECORD_FILE).read_bytes())
    except (OSError, ValidationError):
        return None
