"""The stage registry: every stage described once, read by the runner, the CLI, the operator and the docs.

Modelled on peft's `register_peft_method`: each stage package declares itself in one light module
(`selfguide/stages/<name>/declaration.py`: a `StageDefinition`, importing only the spec and this contract) and
registers it as an entry point of the `selfguide.stages` group (`pyproject.toml`). The registry loads those
declarations on first use, so the operator and `selfguide validate` learn every stage without importing a stage's
implementation; `entry_point` and `preflight` name the heavy code, imported only when the stage runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from importlib.metadata import entry_points
from typing import cast

from selfguide.contract.errors import InvalidInput
from selfguide.contract.results import StageResult
from selfguide.spec import SelfGuideJobSpec

ENTRY_POINT_GROUP = "selfguide.stages"


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
    artifacts: Callable[[SelfGuideJobSpec], tuple[str, ...]]
    """What it leaves for users, relative to the work directory; the first is its main artifact."""
    output_field: str
    """The `status.outputs` field that names the main artifact once the stage succeeded."""
    status_field: str
    """The status field that holds the stage's result."""
    progress_counters: tuple[str, ...] = ()
    """The `StageProgress` counters it reports (the operator refuses another stage's counters)."""
    preflight: str | None = None
    """`module:function` taking the spec, run before a job's first stage does any work, raising PermanentError for
    an input this stage would fail on (so the job fails in seconds, not after the stages before it)."""
    serving: str | None = None
    """`module:function` taking (spec, workdir, job name, namespace) and returning the files this stage adds to
    `<workdir>/serving/` when the job's model is published (file name -> text, or a JSON-able value for a
    `.json` file)."""
    enabled: Callable[[SelfGuideJobSpec], bool] = lambda spec: True
    """Whether a spec runs this stage at all."""

    def artifact(self, spec: SelfGuideJobSpec) -> str:
        """Its main artifact (`status.outputs.<output_field>`)."""
        return self.artifacts(spec)[0]


def load(reference: str) -> Callable[..., object]:
    """The function a declaration names as `module:function`, imported only now (so `validate` and the operator
    never load torch)."""
    module, _, function = reference.partition(":")
    return cast(Callable[..., object], getattr(importlib.import_module(module), function))


_STAGES: dict[str, StageDefinition] = {}
_loaded = False


def register_stage(definition: StageDefinition) -> StageDefinition:
    """Add a stage after the stages it depends on (registration order is pipeline order)."""
    if definition.name in _STAGES:
        raise ValueError(f"stage {definition.name!r} is already registered")
    missing = [name for name in definition.after if name not in _STAGES]
    if missing:
        raise ValueError(f"stage {definition.name!r} runs after unregistered stages: {', '.join(missing)}")
    _STAGES[definition.name] = definition
    return definition


def pipeline_order(declared: Mapping[str, object]) -> list[StageDefinition]:
    """Declared stages (entry point name -> declaration), each after the stages it consumes; ties in name order,
    so the pipeline order never depends on how the entry points are listed."""
    for name, definition in declared.items():
        if not isinstance(definition, StageDefinition) or definition.name != name:
            raise RuntimeError(f"entry point {name!r} of {ENTRY_POINT_GROUP!r} is not the StageDefinition of "
                               f"stage {name!r}")
    stages = cast(Mapping[str, StageDefinition], declared)
    graph = TopologicalSorter({name: [up for up in stages[name].after if up in stages] for name in sorted(stages)})
    try:
        return [stages[name] for name in graph.static_order()]
    except CycleError as error:
        raise RuntimeError(f"stages run after each other in a cycle: {' -> '.join(error.args[1])}") from None


def _registered() -> dict[str, StageDefinition]:
    """The stages, the installed declarations loaded on first use."""
    global _loaded
    if not _loaded:
        _loaded = True
        declared = {point.name: point.load() for point in entry_points(group=ENTRY_POINT_GROUP)}
        if not declared:
            raise RuntimeError(f"no stage is registered (entry point group {ENTRY_POINT_GROUP!r}): "
                               "install the selfguide package (`pip install -e .`, `make setup`)")
        for definition in pipeline_order(declared):
            register_stage(definition)
    return _STAGES


def stage_names() -> tuple[str, ...]:
    """Every registered stage, in pipeline order."""
    return tuple(_registered())


def stage(name: str) -> StageDefinition:
    """The stage called `name`; an unknown name is invalid input."""
    stages = _registered()
    try:
        return stages[name]
    except KeyError:
        raise InvalidInput(f"unknown stage {name!r}; expected one of {', '.join(stages)}") from None


def stages_for(spec: SelfGuideJobSpec) -> list[StageDefinition]:
    """The stages this spec runs, in order."""
    return [definition for definition in _registered().values() if definition.enabled(spec)]
