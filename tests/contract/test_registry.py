"""The stage registry describes every stage once; everything that knows about stages agrees with it."""

from __future__ import annotations

import importlib

import pytest

from selfguide.contract.errors import InvalidInput
from selfguide.contract.registry import StageDefinition, register_stage, stage, stage_names
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
    orphan = StageDefinition(name="orphan", reads=(), after=("nowhere",), entry_point="x:y",
                             result=StageResult, artifact=lambda spec: "x", output_field="x", status_field="x")
    with pytest.raises(ValueError, match="unregistered stages: nowhere"):
        register_stage(orphan)
    assert "orphan" not in stage_names()
