"""The spec models on their own: defaults, camelCase aliases, cross-field rules and name patterns."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from selfguide.spec import (
    BUNDLED_MODEL,
    AnnotationSpec,
    EvaluationSpec,
    InputGenerationSpec,
    ModelSpec,
    SelfGuideJob,
    SelfGuideJobSpec,
    SpecProblems,
    TaskType,
)
from tests import manifests


def minimal_spec(**overrides) -> SelfGuideJobSpec:
    return SelfGuideJobSpec.model_validate({"task": manifests.generation()["spec"]["task"], **overrides})


def test_spec_defaults_follow_the_paper():
    spec = minimal_spec()
    annotation, inputs = spec.generation.annotation, spec.generation.inputs
    assert (annotation.samples, annotation.keep) == (20, 10)
    assert annotation.temperature == 0.2
    assert annotation.top_k == 10
    assert annotation.min_agreement == 0.3
    assert inputs.top_k == 40
    assert inputs.temperature is None
    assert spec.model.name == BUNDLED_MODEL == "bundled://smollm2-135m-instruct"
    assert spec.evaluation is None
    assert spec.suspend is False
    assert spec.generation.filtering.noise and spec.generation.filtering.duplicates
    assert spec.generation.filtering.balance_classes
    assert not spec.generation.filtering.near_duplicates.enabled


@pytest.mark.parametrize(
    ("configured", "task_type", "expected"),
    [
        (None, TaskType.CLASSIFICATION, 0.7),
        (None, TaskType.GENERATION, 0.9),
        (0.6, TaskType.CLASSIFICATION, 0.6),
        (0.0, TaskType.GENERATION, 0.0),  # 0 is a setting (greedy), not "unset"
    ],
)
def test_input_temperature_defaults_per_task_type(configured, task_type, expected):
    assert InputGenerationSpec(temperature=configured).temperature_for(task_type) == expected


def test_length_filter_enabled_for_uses_the_task_default_only_when_unset():
    filtering = minimal_spec().generation.filtering
    assert filtering.output_length.enabled_for(True) is True
    assert filtering.output_length.enabled_for(False) is False
    forced = minimal_spec(generation={"filtering": {"outputLength": {"enabled": False}}}).generation.filtering
    assert forced.output_length.enabled_for(True) is False


def test_manifest_keys_are_camel_case_and_round_trip():
    job = SelfGuideJob.model_validate(manifests.classification())
    manifest = job.to_camel_dict()
    assert manifest["apiVersion"] == "selfguide.dev/v1alpha1"
    generation = manifest["spec"]["generation"]
    assert generation["maxPromptTokens"] == 2048
    assert generation["annotation"]["minAgreement"] == 0.3
    assert generation["inputs"]["maxPoolExamples"] == 10
    assert manifest["spec"]["training"]["gradientAccumulationSteps"] == 1
    assert "targetInputs" not in generation["inputs"]  # unset optionals are left out
    assert "evaluation" not in manifest["spec"]

    def keys(obj):
        if isinstance(obj, dict):
            for key, value in obj.items():
                yield key
                yield from keys(value)
        elif isinstance(obj, list):
            for value in obj:
                yield from keys(value)

    assert not [k for k in keys(manifest) if "_" in k]
    assert SelfGuideJob.model_validate(manifest) == job
    assert SelfGuideJob.model_validate(manifest).to_camel_dict() == manifest


def test_python_side_accepts_snake_case_names():
    assert AnnotationSpec(min_agreement=0.5, top_k=3).to_camel_dict()["minAgreement"] == 0.5
    assert AnnotationSpec.model_validate({"minAgreement": 0.5}).min_agreement == 0.5


def test_specs_are_frozen():
    spec = minimal_spec()
    with pytest.raises(ValidationError):
        spec.suspend = True  # type: ignore[misc]


def test_keep_may_not_exceed_samples():
    assert AnnotationSpec(samples=5, keep=5).keep == 5
    with pytest.raises(ValidationError) as info:
        AnnotationSpec(samples=5, keep=6)
    cause = info.value.errors()[0]["ctx"]["error"]
    assert isinstance(cause, SpecProblems)
    assert cause.problems == [("keep", "must not exceed samples")]


@pytest.mark.parametrize(
    "fields",
    [
        {"examples": [{"input": "a", "output": "b"}]},
        {"path": "/data/eval.jsonl"},
        {"path": "./eval.jsonl"},
        {"path": "pvc://claim/eval.jsonl"},
    ],
)
def test_evaluation_with_one_source_is_valid(fields):
    spec = EvaluationSpec.model_validate(fields)
    assert (spec.examples is not None, spec.path is not None) == ("examples" in fields, "path" in fields)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"examples": [{"input": "a", "output": "b"}], "path": "/data/eval.jsonl"},
    ],
)
def test_evaluation_needs_exactly_one_source(fields):
    with pytest.raises(ValidationError, match="set exactly one of examples or path"):
        EvaluationSpec.model_validate(fields)


@pytest.mark.parametrize(
    "name",
    [
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "lmsys/vicuna-7b-v1.5",
        "/abs/path",
        "/models/vicuna",
        "./relative/dir",
        "../up/dir",
        "file:///models/x",
        "pvc://claim/path",
        "pvc://my-claim/deep/path/",
        "bundled://smollm2-135m-instruct",
    ],
)
def test_model_name_accepts_documented_forms(name):
    assert ModelSpec(name=name).name == name


@pytest.mark.parametrize(
    "name",
    [
        "pvc://",  # no claim
        "pvc://claim",  # a claim but no path inside it
        "pvc://Bad_Claim/path",  # the claim is a DNS label
        "bundled://",
        "gpt2",  # Hub ids are org/name
        "org/",
        "org/name/extra",  # three segments: neither a Hub id nor an explicit local path
        "relative/path/with/three",  # relative local paths must start with ./ or ../
        "org/na me",
        "",
        "pvc://claim/../other-claim/x",  # '..' would leave the claim
        "pvc://claim/models/..",
    ],
)
def test_model_name_rejects_other_forms(name):
    with pytest.raises(ValidationError):
        ModelSpec(name=name)


def test_rounds_default_to_the_papers_budget_per_task_type():
    from selfguide.spec import InputGenerationSpec, TaskType

    default = InputGenerationSpec()
    assert (default.rounds_for(TaskType.CLASSIFICATION), default.rounds_for(TaskType.GENERATION)) == (40, 20)
    assert InputGenerationSpec(max_rounds=3).rounds_for(TaskType.GENERATION) == 3


@pytest.mark.parametrize("uri", ["pvc://claim/../x.jsonl", "pvc://claim/a/../../x.jsonl"])
def test_pvc_paths_cannot_leave_their_claim_in_the_spec_or_the_crd(uri):
    """The pydantic models refuse `..` with the parser's message; the CRD's pattern (RE2) refuses it too."""
    import re

    from selfguide.crd import CRD_FILE
    from selfguide.spec import EvaluationSpec

    root = Path(__file__).resolve().parents[2]
    with pytest.raises(ValidationError, match="would leave the claim"):
        EvaluationSpec(path=uri)
    with pytest.raises(ValidationError, match="would leave the claim"):
        ModelSpec(name=uri)
    import yaml

    def patterns(node: object) -> list[str]:
        if isinstance(node, dict):
            own = [node["pattern"]] if "pvc://" in str(node.get("pattern", "")) else []
            return own + [p for value in node.values() for p in patterns(value)]
        return [p for value in node for p in patterns(value)] if isinstance(node, list) else []

    [version] = yaml.safe_load((root / CRD_FILE).read_text())["spec"]["versions"]
    found = patterns(version["schema"]["openAPIV3Schema"]["properties"]["spec"])
    assert len(found) == 2
    for pattern in found:
        assert not re.fullmatch(pattern, uri)
        assert re.fullmatch(pattern, "pvc://claim/dir/..x/file.jsonl")
