"""The stage registry describes every stage once; everything that knows about stages agrees with it."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from selfguide.contract.errors import InvalidInput
from selfguide.contract.progress import StageProgress
from selfguide.contract.registry import StageDefinition, pipeline_order, register_stage, stage, stage_names
from selfguide.contract.results import StageResult
from selfguide.contract.status import Outputs, SelfGuideJobStatus
from selfguide.spec import SelfGuideJobSpec
from selfguide.spec.runtime import StagesSettings


def test_the_pipeline_order_respects_dependencies():
    names = stage_names()
    assert names == ("generate", "train", "evaluate")
    for position, name in enumerate(names):
        assert all(names.index(up) < position for up in stage(name).after)


@pytest.mark.parametrize("name", ["generate", "train", "evaluate"])
def test_each_definition_is_consistent_with_the_status_and_the_spec(name):
    definition = stage(name)
    assert definition.output_field in Outputs.model_fields
    annotation = SelfGuideJobStatus.model_fields[definition.status_field].annotation
    assert definition.result in getattr(annotation, "__args__", ())
    assert issubclass(definition.result, StageResult)
    assert set(definition.reads) <= set(SelfGuideJobSpec.model_fields)
    assert name in StagesSettings.model_fields  # per-stage pod settings exist for every stage


@pytest.mark.slow
@pytest.mark.parametrize("name", ["generate", "train", "evaluate"])
def test_entry_points_resolve(name):
    module, _, function = stage(name).entry_point.partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_unknown_stage_is_invalid_input():
    with pytest.raises(InvalidInput, match="unknown stage 'tune'"):
        stage("tune")


def test_registration_rejects_duplicates_and_unknown_upstream():
    definition = stage("train")
    with pytest.raises(ValueError, match="already registered"):
        register_stage(definition)
    orphan = _definition("orphan", after=("nowhere",))
    with pytest.raises(ValueError, match="unregistered stages: nowhere"):
        register_stage(orphan)
    assert "orphan" not in stage_names()


def _definition(name: str, after: tuple[str, ...] = ()) -> StageDefinition:
    return StageDefinition(name=name, reads=(), after=after, entry_point="x:y", result=StageResult,
                           artifacts=lambda spec: ("x",), output_field="x", status_field="x")


def test_pipeline_order_follows_dependencies_not_listing_order():
    stages = {"report": _definition("report", ("fit",)), "fit": _definition("fit", ("make",)),
              "make": _definition("make"), "audit": _definition("audit")}
    assert [d.name for d in pipeline_order(stages)] == ["audit", "make", "fit", "report"]
    assert [d.name for d in pipeline_order(dict(reversed(stages.items())))] == ["audit", "make", "fit", "report"]


def test_pipeline_order_refuses_a_cycle_and_a_declaration_under_another_name():
    with pytest.raises(RuntimeError, match="in a cycle"):
        pipeline_order({"a": _definition("a", ("b",)), "b": _definition("b", ("a",))})
    with pytest.raises(RuntimeError, match="entry point 'fit' .* is not the StageDefinition of stage 'fit'"):
        pipeline_order({"fit": _definition("make")})


def test_stage_counters_cover_every_progress_counter_once():
    declared = [counter for name in stage_names() for counter in stage(name).progress_counters]
    common = {"percent", "eta_seconds", "elapsed_seconds", "updated_at"}
    assert sorted(declared) == sorted(set(StageProgress.model_fields) - common)


def test_loading_the_registry_imports_no_stage_implementation():
    """The operator and `selfguide validate` read every declaration: they must stay light (no torch, no engine, no
    stage code)."""
    probe = ("import sys; from selfguide.contract.registry import stage_names; stage_names(); "
             "print(' '.join(m for m in sys.modules if m.startswith(('torch', 'transformers', 'selfguide.engine', "
             "'selfguide.runner')) or (m.startswith('selfguide.stages.') and m.count('.') == 3 "
             "and not m.endswith('.declaration'))))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
