"""The SelfGuideJob CRD: generated from the spec models without drift, structural and bounded, and enforcing
on `kubectl apply` the same rules as `selfguide validate`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from selfguide.cli import app
from selfguide.crd import CRD_FILE, custom_resource_definition, render
from selfguide.manifest import ManifestError, validate_object
from tests.harness.fixtures import Kubectl
from tests.manifests import classification, generation
from tests.operator.helpers import ROOT, load_example

FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "const", "propertyNames", "title"}


def schema() -> dict[str, Any]:
    return custom_resource_definition()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{}}")


def test_the_committed_crd_is_what_the_models_generate():
    assert (ROOT / CRD_FILE).read_text() == render(), "CRD drift: run `selfguide crd -o crds/selfguide.dev_selfguidejobs.yaml`"


def test_selfguide_crd_prints_it():
    result = CliRunner().invoke(app, ["crd"])
    assert result.exit_code == 0 and yaml.safe_load(result.output) == custom_resource_definition()


def test_the_schema_is_structural_and_every_string_list_and_map_is_bounded():
    assert "&id" not in render()  # no YAML aliases: each node is written out in full
    for path, node in nodes(schema()):
        assert not FORBIDDEN & node.keys(), path
        assert node.get("additionalProperties") is not False, path
        assert "type" in node, path
        if path in ("", ".metadata", ".apiVersion", ".kind") or node.get("x-kubernetes-preserve-unknown-fields"):
            continue
        if node["type"] == "string":
            assert "maxLength" in node or "enum" in node or node.get("format") == "date-time", path
        elif node["type"] == "array":
            assert "maxItems" in node, path
        elif node["type"] == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


def test_kubernetes_structures_pass_through_and_nothing_is_nullable():
    pod = schema()["properties"]["spec"]["properties"]["pod"]["properties"]
    assert pod["affinity"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert pod["tolerations"]["items"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert "nullable" not in json.dumps(schema())


def test_defaults_descriptions_and_rules_come_from_the_models():
    spec = schema()["properties"]["spec"]["properties"]
    assert spec["model"]["properties"]["name"]["default"] == "bundled://smollm2-135m-instruct"
    assert spec["generation"]["default"] == {} and "default" not in spec["evaluation"]
    assert "default" not in spec["generation"]["properties"]["inputs"]["properties"]["maxRounds"]  # per task type
    assert spec["task"]["properties"]["instruction"]["description"].startswith("The task description")
    assert {"rule": "self == oldSelf", "message": "task is immutable; create a new SelfGuideJob instead"} in \
        spec["task"]["x-kubernetes-validations"]
    assert schema()["properties"]["status"]["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_resource_names_columns_and_subresources():
    crd = custom_resource_definition()
    assert crd["metadata"]["name"] == "selfguidejobs.selfguide.dev"
    assert crd["spec"]["names"]["shortNames"] == ["sgj"] and crd["spec"]["names"]["categories"] == ["all"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c.get("priority", 0) for c in version["additionalPrinterColumns"]}
    assert columns == {"Phase": 0, "Stage": 0, "Progress": 0, "Stage%": 0, "ETA(s)": 0, "Complete": 0, "Age": 0,
                       "Model": 1, "Adapter": 1, "Gate": 1}


def labels(m: dict) -> None:
    m["spec"]["task"]["labels"] = ["positive"]


def long_name(m: dict) -> None:
    m["metadata"]["name"] = "n" * 53


def dotted_name(m: dict) -> None:
    m["metadata"]["name"] = "a.b"


def set_(path: str, value: Any) -> Callable[[dict], None]:
    def apply(m: dict) -> None:
        *parents, last = path.split(".")
        node = m
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    apply.__name__ = f"{path}={value!r}"[:60]
    return apply


def delete(path: str) -> Callable[[dict], None]:
    def apply(m: dict) -> None:
        *parents, last = path.split(".")
        node = m
        for key in parents:
            node = node[key]
        del node[last]
    apply.__name__ = f"del {path}"
    return apply


EVAL = [{"input": "x", "output": "positive"}]
ENDPOINT = {"url": "http://qwen.models:8000/v1", "model": "qwen"}


def full_with_server_adapter() -> dict:
    document = generation()
    document["spec"]["generation"] = {"backend": "openai", "endpoint": {**ENDPOINT, "adapter": "server"}}
    return document
INVALID: list[tuple[Callable[[], dict], Callable[[dict], None], str]] = [
    (classification, delete("spec.task.labels"), "classification needs a list of at least two labels"),
    (classification, labels, "classification needs"),
    (classification, set_("spec.task.labels", ["positive", "negative", "positive"]), "labels must be distinct"),
    (classification, set_("spec.task.labels", ["positive", "negative", " Positive"]), "labels must be distinct"),
    (classification, set_("spec.task.examples", [{"input": "i", "output": "neutral"}]),
     "every example output must be one of the labels"),
    (generation, set_("spec.task.labels", ["a", "b"]), "labels are only allowed when type is classification"),
    (generation, set_("spec.generation.annotation", {"samples": 2, "keep": 3}), "must not exceed samples"),
    (generation, set_("spec.generation.annotation", {"keep": 30}), "must not exceed samples"),
    (generation, set_("spec.generation.inputs", {"minPoolExamples": 5, "maxPoolExamples": 2}),
     "must not exceed maxPoolExamples"),
    (classification, set_("spec.evaluation", {"maxNewTokens": 8}), "set exactly one of examples or path"),
    (classification, set_("spec.evaluation", {"examples": EVAL, "path": "/x.jsonl"}), "set exactly one"),
    (generation, long_name, "at most 52 characters"),
    (generation, dotted_name, "DNS label"),
    (generation, set_("spec.task.type", "regression"), "spec.task.type"),
    (generation, set_("spec.task.instruction", "x" * 16385), "spec.task.instruction"),
    (generation, set_("spec.task.examples", []), "spec.task.examples"),
    (generation, delete("spec.task.instruction"), "spec.task.instruction"),
    (generation, set_("spec.model.name", "pvc://"), "spec.model.name"),
    (generation, set_("spec.training.lora.r", 0), "spec.training.lora.r"),
    (generation, set_("spec.training.learningRate", 0), "spec.training.learningRate"),
    (generation, set_("spec.generation.inputs.maxRound", 3), 'unknown field "spec.generation.inputs.maxRound"'),
    (generation, set_("spec.pod.tolerations", [{}] * 65), "spec.pod.tolerations"),
    (generation, set_("spec.activeDeadlineSeconds", 0), "spec.activeDeadlineSeconds"),
    (generation, set_("spec.generation.backend", "openai"), "set exactly when backend is openai"),
    (generation, set_("spec.generation.endpoint", ENDPOINT), "set exactly when backend is openai"),
    (generation, set_("spec.generation", {"backend": "openai", "endpoint": {**ENDPOINT, "url": "ftp://x/v1"}}),
     "spec.generation.endpoint.url"),
    (generation, set_("spec.generation", {"backend": "openai", "endpoint": {**ENDPOINT, "concurrency": 0}}),
     "spec.generation.endpoint.concurrency"),
    (full_with_server_adapter, set_("spec.training.method", "full"), "a server loads LoRA adapters only"),
]


def server_dry_run(kubectl: Kubectl, namespace: str, manifest: dict) -> tuple[int, str]:
    result = kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(manifest),
                     check=False)
    return result.returncode, result.stderr


@pytest.mark.integration
@pytest.mark.parametrize(("base", "mutate", "message"), INVALID,
                         ids=[f"{b.__name__}-{m.__name__}" for b, m, _ in INVALID])
def test_kubectl_apply_rejects_what_selfguide_validate_rejects(selfguide_crd, kubectl, namespace, base, mutate,
                                                               message):
    document = base()
    mutate(document)
    with pytest.raises(ManifestError):
        validate_object(document)
    code, stderr = server_dry_run(kubectl, namespace, document)
    assert code != 0 and message in stderr, stderr


@pytest.mark.integration
@pytest.mark.parametrize("document", [classification(), generation(), full_with_server_adapter(),
                                      load_example("examples/sentiment-classification.yaml"),
                                      load_example("examples/fact-generation.yaml")],
                         ids=["classification", "generation", "endpoint", "sentiment-example", "facts-example"])
def test_valid_manifests_are_accepted_and_defaulted_as_pydantic_defaults_them(selfguide_crd, kubectl, namespace,
                                                                               document):
    created = json.loads(kubectl("create", "-n", namespace, "-o", "json", "-f", "-",
                                 input=json.dumps(document)).stdout)
    assert validate_object(created).spec == validate_object(document).spec
    assert created["spec"]["generation"]["inputs"]["topK"] == 40  # defaults are in the stored object


@pytest.mark.integration
def test_task_and_model_are_immutable_but_suspend_and_generation_are_not(selfguide_crd, kubectl, namespace):
    kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(classification()))

    def patch(spec: dict) -> Any:
        return kubectl("patch", "-n", namespace, "sgj/sentiment", "--type=merge", "-p", json.dumps({"spec": spec}),
                       check=False)

    assert "task is immutable" in patch({"task": {"instruction": "Something else."}}).stderr
    assert "model is immutable" in patch({"model": {"dtype": "float32"}}).stderr
    assert patch({"suspend": True}).returncode == 0
    assert patch({"generation": {"batchSize": 4}}).returncode == 0


@pytest.mark.integration
def test_kubectl_shows_columns_short_name_category_and_explains_fields(selfguide_crd, kubectl, namespace):
    kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(generation()))
    assert kubectl("get", "sgj", "-n", namespace).stdout.split()[:8] == [
        "NAME", "PHASE", "STAGE", "PROGRESS", "STAGE%", "ETA(S)", "COMPLETE", "AGE"]
    assert "MODEL" in kubectl("get", "sgj", "-n", namespace, "-o", "wide").stdout
    assert "selfguidejob.selfguide.dev/reverse-words" in kubectl("get", "all", "-n", namespace).stdout
    explained = kubectl("explain", "sgj.spec.task").stdout
    assert "The task description given to the model" in explained and "labels" in explained
