"""The stage registry: every stage described once, read by the runner, the CLI, the operator and the docs.

Modelled on peft's `register_peft_method`: a stage package declares itself with `register_stage`, and
everything else looks stages up here instead of spelling their names. The declarations of the built-in
stages live in `selfguide.contract.stages` (this layer), so that the operator can read them without
importing a stage's implementation; `entry_point` names that implementation, imported only by the runner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from selfguide.contract.errors import InvalidInput
from selfguide.contract.results import StageResult
from selfguide.spec import SelfGuideJobSpec


@dataclass(frozen=True)
class StageDefinition:
    """Everything the rest of the system needs to know about one stage."""

    name: str
    reads: tuple[str, ...]
    """The spec sections its output depends on (its config hash covers exactly these)."""
    after: tuple[str, ...]
    """Upstream stages whose records it consumes (their record hashes chain into its own)."""
    entry_point: str
    """`module:function` taking a `StageContext` and returning `result`; imported only when the stage runs."""
    result: type[StageResult]
    artifact: Callable[[SelfGuideJobSpec], str]
    """Its main artifact, relative to the work directory."""
    output_field: str
    """The `status.outputs` field that names the main artifact once the stage succeeded."""
    status_field: str
    """The status field that holds the stage's result."""
    enabled: Callable[[SelfGuideJobSpec], bool] = lambda spec: True
    """Whether a spec runs this stage at all."""


_STAGES: dict[str, StageDefinition] = {}


def register_stage(definition: StageDefinition) -> StageDefinition:
    """Add a stage after the stages it depends on (registration order is pipeline order)."""
    if definition.name in _STAGES:
        raise ValueError(f"stage {definition.name!r} is already registered")
    missing = [name for name in definition.after if name not in _STAGES]
    if missing:
        raise ValueError(f"stage {definition.name!r} runs after unregistered stages: {', '.join(missing)}")
    _STAGES[definition.name] = definition
    return definition


def stage_names() -> tuple[str, ...]:
    """Every registered stage, in pipeline order."""
    return tuple(_STAGES)


def stage(name: str) -> StageDefinition:
    """The stage called `name`; an unknown name is invalid input."""
    try:
        return _STAGES[name]
    except KeyError:
        raise InvalidInput(f"unknown stage {name!r}; expected one of {', '.join(_STAGES)}") from None


def stages_for(spec: SelfGuideJobSpec) -> list[StageDefinition]:
    """The stages this spec runs, in order."""
    return [definition for definition in _STAGES.values() if definition.enabled(spec)]
