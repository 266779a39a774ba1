"""Manifest loading and validation: every failure becomes `field.path: problem` lines, never a traceback."""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from selfguide.cli import app
from selfguide.manifest import (
    MAX_SPEC_BYTES,
    ManifestError,
    SpecTooLarge,
    load_manifest,
    load_manifests,
    validate_object,
)
from selfguide.spec.problems import Problem, field_path
from tests import manifests

REPO = Path(__file__).resolve().parents[1]


def problems(obj) -> list[str]:
    with pytest.raises(ManifestError) as info:
        validate_object(obj)
    return [str(p) for p in info.value.problems]


def file_problems(path: Path) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load_manifests(path)
    assert info.value.source == str(path)
    return [str(p) for p in info.value.problems]


def mutated(base: Callable[[], dict], change: Callable[[dict], object]) -> dict:
    obj = base()
    change(obj)
    return obj


# -- validate_object -----------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [manifests.classification, manifests.generation])
def test_valid_manifests(base):
    job = validate_object(base())
    assert job.kind == "SelfGuideJob"
    assert job.metadata.name == base()["metadata"]["name"]


def test_example_manifest_in_the_repo_is_valid():
    (job,) = load_manifests(REPO / "examples" / "sentiment-classification.yaml")
    assert job.spec.task.labels == ["positive", "negative"]


def test_classification_without_labels():
    obj = mutated(manifests.classification, lambda m: m["spec"]["task"].pop("labels"))
    assert problems(obj) == ["spec.task.labels: classification needs a list of at least two labels"]


def test_example_output_not_among_labels_points_at_the_example():
    obj = mutated(manifests.classification, lambda m: m["spec"]["task"]["examples"][1].update(output="neutral"))
    (line,) = problems(obj)
    assert line.startswith("spec.task.examples[1].output: ")
    assert "'neutral'" in line


def test_labels_on_a_generation_task():
    obj = mutated(manifests.generation, lambda m: m["spec"]["task"].update(labels=["a", "b"]))
    assert problems(obj) == ["spec.task.labels: labels are only allowed when type is classification"]


def test_duplicate_labels():
    obj = mutated(manifests.classification, lambda m: m["spec"]["task"].update(labels=["positive", "negative", "positive"]))
    assert problems(obj) == ["spec.task.labels: labels must be distinct (ignoring case and surrounding spaces)"]


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ((), "bogus"),
        (("metadata",), "metadata.bogus"),
        (("spec",), "spec.bogus"),
        (("spec", "task"), "spec.task.bogus"),
        (("spec", "task", "examples", 2), "spec.task.examples[2].bogus"),
        (("spec", "generation", "annotation"), "spec.generation.annotation.bogus"),
        (("spec", "generation", "filtering", "nearDuplicates"), "spec.generation.filtering.nearDuplicates.bogus"),
        (("spec", "training", "lora"), "spec.training.lora.bogus"),
    ],
)
def test_unknown_field_at_any_depth(where, path):
    obj = manifests.generation()
    node = obj
    for key in where:
        if isinstance(node, dict) and key not in node:
            node[key] = {}
        node = node[key]
    node["bogus"] = 1
    assert problems(obj) == [f"{path}: unknown field"]


@pytest.mark.parametrize(
    ("where", "key"),
    [
        ((), "metadata"),
        ((), "spec"),
        (("metadata",), "name"),
        (("spec",), "task"),
        (("spec", "task"), "instruction"),
        (("spec", "task"), "examples"),
        (("spec", "task", "examples", 0), "output"),
    ],
)
def test_missing_required_field(where, key):
    obj = manifests.generation()
    node = obj
    for part in where:
        node = node[part]
    del node[key]
    assert problems(obj) == [f"{field_path((*where, key))}: required field is missing"]


def test_every_problem_is_reported_at_once():
    def change(m):
        m["spec"]["task"].pop("instruction")
        m["spec"]["task"]["bogus"] = True
        m["metadata"]["name"] = "Not_A_Label"

    lines = problems(mutated(manifests.generation, change))
    assert len(lines) == 3
    assert "spec.task.instruction: required field is missing" in lines
    assert "spec.task.bogus: unknown field" in lines
    assert any(line.startswith("metadata.name: ") for line in lines)


@pytest.mark.parametrize(("key", "value"), [("kind", "Job"), ("apiVersion", "v1"), ("apiVersion", "selfguide.dev/v1")])
def test_wrong_kind_or_api_version(key, value):
    (line,) = problems(mutated(manifests.generation, lambda m: m.update({key: value})))
    assert line.startswith(f"{key}: ")


@pytest.mark.parametrize("key", ["kind", "apiVersion"])
def test_kind_and_api_version_are_required_in_a_manifest(key):
    # kubectl apply rejects a document without apiVersion/kind; `selfguide validate` promises the same rules.
    assert problems(mutated(manifests.generation, lambda m: m.pop(key))) == [f"{key}: required field is missing"]


@pytest.mark.parametrize(
    ("where", "camel", "snake", "value"),
    [
        ((), "apiVersion", "api_version", "selfguide.dev/v1alpha1"),
        (("spec", "generation"), "maxPromptTokens", "max_prompt_tokens", 512),
        (("spec", "generation", "annotation"), "minAgreement", "min_agreement", 0.5),
    ],
)
def test_snake_case_keys_are_unknown_in_manifests(where, camel, snake, value):
    # The CRD has only the camelCase names: on a cluster a snake_case key is pruned (the setting silently
    # falls back to its default) or rejected, so the local validator must not accept it either.
    obj = manifests.generation()
    node = obj
    for part in where:
        node = node.setdefault(part, {})
    node.pop(camel, None)
    node[snake] = value
    assert f"{field_path((*where, snake))}: unknown field" in problems(obj)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a" * 52, True),
        ("a" * 53, False),
        ("job-1", True),
        ("1job", True),
        ("Job", False),
        ("my_job", False),
        ("-job", False),
        ("job-", False),
        ("job.x", False),
        ("", False),
    ],
)
def test_metadata_name_is_a_short_dns_label(name, ok):
    obj = mutated(manifests.generation, lambda m: m["metadata"].update(name=name))
    if ok:
        assert validate_object(obj).metadata.name == name
    else:
        (line,) = problems(obj)
        assert line.startswith("metadata.name: ")


def test_name_too_long_message():
    obj = mutated(manifests.generation, lambda m: m["metadata"].update(name="a" * 53))
    assert problems(obj) == ["metadata.name: String should have at most 52 characters"]


def test_server_populated_metadata_is_accepted():
    obj = mutated(manifests.generation, lambda m: m["metadata"].update(
        uid="0000", resourceVersion="12", generation=3, creationTimestamp="2024-01-01T00:00:00Z",
        managedFields=[{"manager": "kubectl"}]))
    obj["status"] = {"phase": "Running"}
    assert validate_object(obj).metadata.resource_version == "12"


def test_keep_greater_than_samples_points_at_keep():
    obj = mutated(manifests.generation, lambda m: m["spec"].update(generation={"annotation": {"samples": 5, "keep": 6}}))
    assert problems(obj) == ["spec.generation.annotation.keep: must not exceed samples"]


def test_pool_bounds_point_at_min_pool_examples():
    obj = mutated(manifests.generation, lambda m: m["spec"].update(
        generation={"inputs": {"minPoolExamples": 5, "maxPoolExamples": 2}}))
    assert problems(obj) == ["spec.generation.inputs.minPoolExamples: must not exceed maxPoolExamples"]


@pytest.mark.parametrize(
    "evaluation",
    [{}, {"path": "/data/eval.jsonl", "examples": [{"input": "a", "output": "b"}]}],
)
def test_evaluation_needs_exactly_one_source(evaluation):
    obj = mutated(manifests.generation, lambda m: m["spec"].update(evaluation=evaluation))
    assert problems(obj) == ["spec.evaluation: set exactly one of examples or path"]


def test_pvc_without_claim_is_rejected_at_spec_model_name():
    (line,) = problems(mutated(manifests.generation, lambda m: m["spec"].update(model={"name": "pvc://"})))
    assert line.startswith("spec.model.name: ")


def test_huge_instruction_gives_a_short_message():
    obj = mutated(manifests.generation, lambda m: m["spec"]["task"].update(instruction="x" * 10_000_000))
    assert problems(obj) == ["spec.task.instruction: String should have at most 16384 characters"]


@pytest.mark.parametrize(("obj", "kind"), [([1, 2], "list"), (42, "int"), ("text", "str"), (None, "nothing")])
def test_non_mapping_documents(obj, kind):
    assert problems(obj) == [f"a manifest must be a mapping, got {kind}"]


# -- load_manifests: files -----------------------------------------------------------------------------


def test_two_valid_documents(tmp_path):
    second = mutated(manifests.classification, lambda m: m["metadata"].update(name="second"))
    path = manifests.write(tmp_path / "jobs.yaml", manifests.generation(), second)
    assert [job.metadata.name for job in load_manifests(path)] == ["reverse-words", "second"]
    with pytest.raises(ManifestError, match="expected one SelfGuideJob, found 2"):
        load_manifest(path)


def test_bad_second_document_is_named(tmp_path):
    bad = mutated(manifests.classification, lambda m: m["spec"]["task"].update(bogus=1))
    path = manifests.write(tmp_path / "jobs.yaml", manifests.generation(), bad, [1, 2])
    assert file_problems(path) == [
        "document 2: spec.task.bogus: unknown field",
        "document 3: a manifest must be a mapping, got list",
    ]


@pytest.mark.parametrize(
    "content",
    [b"", b"   \n\n", b"\r\n  \r\n", b"---\n---\n", b"# only a comment\n", b"\t\n", b"  \t  \n\n"],
    ids=["empty", "spaces", "crlf", "separators", "comment", "tab", "spaces-and-tab"],
)
def test_empty_or_whitespace_only_file(tmp_path, content):
    path = tmp_path / "job.yaml"
    path.write_bytes(content)
    assert file_problems(path) == ["the file is empty; expected a SelfGuideJob manifest"]


def test_invalid_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("metadata:\n  name: x\nspec: [1, 2\nother: 3\n")
    (line,) = file_problems(path)
    assert line.startswith("invalid YAML at line 4, column 6: ")


@pytest.mark.parametrize(("text", "kind"), [("- 1\n- 2\n", "list"), ("42\n", "int"), ("hello\n", "str")])
def test_non_mapping_file(tmp_path, text, kind):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    assert file_problems(path) == [f"a manifest must be a mapping, got {kind}"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name: caf\xe9\n", "not UTF-8 text (byte 9)"),
        (b"kind: SelfGuideJob\x00\n", "not a text file (contains NUL bytes)"),
        (b"\x00" * 16, "not a text file (contains NUL bytes)"),
        (bytes(range(256)) * 8, "not UTF-8 text (byte 128)"),
    ],
)
def test_binary_junk(tmp_path, content, message):
    path = tmp_path / "job.yaml"
    path.write_bytes(content)
    assert file_problems(path) == [message]


def test_random_bytes(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(random.Random(7).randbytes(4096) + b"\x00")
    (line,) = file_problems(path)
    assert line.startswith(("not UTF-8 text", "not a text file"))


def test_missing_file(tmp_path):
    assert file_problems(tmp_path / "nope.yaml") == ["cannot read file: No such file or directory"]


def test_problem_str():
    assert str(Problem("spec.task", "bad")) == "spec.task: bad"
    assert str(Problem("", "bad")) == "bad"
    assert field_path(("spec", "task", "examples", 1, "output")) == "spec.task.examples[1].output"


# -- the CLI -------------------------------------------------------------------------------------------

runner = CliRunner()


def test_cli_validate_valid_files(tmp_path):
    one = manifests.write(tmp_path / "a.yaml", manifests.classification())
    two = manifests.write(tmp_path / "b.yaml", manifests.generation())
    result = runner.invoke(app, ["validate", str(one), str(two)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{one}: SelfGuideJob sentiment is valid",
        f"{two}: SelfGuideJob reverse-words is valid",
    ]


def test_cli_validate_reports_one_line_per_problem(tmp_path):
    obj = mutated(manifests.classification, lambda m: m["spec"]["task"]["examples"][1].update(output="neutral"))
    path = manifests.write(tmp_path / "job.yaml", obj)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("spec.task.examples[1].output: ")


def test_cli_validate_prefixes_the_file_when_given_several(tmp_path):
    good = manifests.write(tmp_path / "good.yaml", manifests.generation())
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n")
    result = runner.invoke(app, ["validate", str(good), str(bad)])
    assert result.exit_code == 2
    assert f"{good}: SelfGuideJob reverse-words is valid" in result.stdout
    assert result.stderr.splitlines() == [f"{bad}: a manifest must be a mapping, got list"]


def test_cli_validate_reads_standard_input():
    result = runner.invoke(app, ["validate", "-"], input=yaml.safe_dump(manifests.generation()))
    assert result.exit_code == 0, result.output
    assert "SelfGuideJob reverse-words is valid" in result.stdout


def test_cli_without_arguments_shows_help_not_a_traceback():
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_cli_subprocess_bad_input_exits_2_with_short_output(tmp_path):
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(random.Random(1).randbytes(2048) + b"\x00\xff")
    huge = tmp_path / "huge.yaml"
    job = manifests.generation()
    job["spec"]["task"]["instruction"] = "PLACEHOLDER"
    huge.write_text(yaml.safe_dump(job).replace("PLACEHOLDER", "x" * 10_000_000))  # 10 MB
    script = Path(sys.executable).with_name("selfguide")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "selfguide.cli"]
    result = subprocess.run([*command, "validate", str(junk), str(huge)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stdout) + len(result.stderr) < 2048
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{junk}: not ")
    assert lines[1] == f"{huge}: spec.task.instruction: String should have at most 16384 characters"


def test_a_spec_too_large_for_the_spec_config_map_is_refused():
    document = manifests.generation()
    document["spec"]["pod"] = {"affinity": {"x": "p" * MAX_SPEC_BYTES}}
    with pytest.raises(SpecTooLarge, match="spec: the spec takes"):
        validate_object(document)
