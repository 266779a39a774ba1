"""Which spec the status speaks for: `status.observedGeneration` never claims results the current spec did not
produce. Each stage Job is annotated with the generation and the hash of the spec sections its stage reads;
a stage that ran (or runs) with sections the spec has changed since holds the observed generation back."""

from __future__ import annotations

from collections.abc import Sequence

from selfguide.contract.confighash import spec_hash
from selfguide.contract.status import StageStatus
from selfguide.spec import SelfGuideJobSpec


def stale_stages(spec: SelfGuideJobSpec, entries: Sequence[StageStatus]) -> list[StageStatus]:
    """Stages whose Job ran with spec sections that differ from `spec`'s."""
    return [e for e in entries if e.config_hash is not None and e.generation is not None
            and e.config_hash != spec_hash(spec, e.name)]


def observed_generation(generation: int, spec: SelfGuideJobSpec | None, entries: Sequence[StageStatus]) -> int:
    """`generation` when every stage's results follow from the current spec, else the oldest generation a stale
    stage ran with."""
    if spec is None:
        return generation
    stale = [e.generation for e in stale_stages(spec, entries) if e.generation is not None]
    return min([*stale, generation])
