"""One set of rules: a corpus of manifests on which `kubectl apply` (the CRD's schema and CEL rules, and the API
server's own metadata checks) and `selfguide validate` (the pydantic models) used to disagree -- Unicode versus
ASCII character classes, Python's strip() versus CEL's trim(), key lengths, metadata counts, the total size. Each
is sent to the real API server (server-side dry run) and to `validate_object`; both must give the same answer.
Also: YAML alias bombs are refused by `selfguide validate` before anything is built."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from selfguide.manifest import ManifestError, parse_documents, validate_object
from selfguide.spec.job import MAX_INLINE_TEXT
from tests.manifests import classification, generation
from tests.operator.test_crd import set_

CASES: list[tuple[str, Callable[[], dict], Callable[[dict], None], bool]] = [
    # (id, base, mutation, valid?)
    ("eval-path-nbsp", generation, set_("spec.evaluation", {"path": "pvc://data/eval\u00a0set.jsonl"}), True),
    ("eval-path-tab", generation, set_("spec.evaluation", {"path": "pvc://data/eval\tset.jsonl"}), False),
    ("eval-path-ideographic-space", generation, set_("spec.evaluation", {"path": "/data/a\u3000b"}), True),
    ("model-pvc-nbsp", generation, set_("spec.model.name", "pvc://models/base\u00a0model"), True),
    ("revision-non-ascii-word", generation, set_("spec.model.revision", "r\u00e9vision"), False),
    ("hub-id-non-ascii-letter", generation, set_("spec.model.name", "org/mod\u00e8le"), False),
    ("hub-id-ascii", generation, set_("spec.model.name", "org/model_v1.5-x"), True),
    ("quantity-arabic-indic-digit", generation, set_("spec.pod.shmSize", "\u0661Gi"), False),
    ("quantity-fullwidth-digit", generation, set_("spec.pod.resources", {"limits": {"cpu": "\uff12"}}), False),
    ("quantity-ascii", generation, set_("spec.pod.resources", {"limits": {"cpu": "1500m"}}), True),
    ("labels-differ-by-unit-separator", classification,
     set_("spec.task.labels", ["positive", "negative", "\x1fpositive"]), True),
    ("labels-differ-by-nbsp-only", classification,
     set_("spec.task.labels", ["positive", "negative", "\u00a0positive"]), False),
    ("labels-differ-by-em-space-only", classification,
     set_("spec.task.labels", ["positive", "negative", "positive\u2003"]), False),
    ("labels-differ-by-zero-width-space", classification,
     set_("spec.task.labels", ["positive", "negative", "positive\u200b"]), True),
    ("labels-non-ascii-case", classification, set_("spec.task.labels", ["positive", "negative", "\u00c9", "\u00e9"]),
     True),
    ("node-selector-key-317", generation, set_("spec.pod.nodeSelector", {"k" * 317: "v"}), True),
    ("node-selector-key-318", generation, set_("spec.pod.nodeSelector", {"k" * 318: "v"}), False),
    ("resource-name-254", generation, set_("spec.stages.train.resources", {"limits": {"r" * 254: "1"}}), False),
    ("annotations-300", generation, set_("metadata.annotations", {f"a{i}": "x" for i in range(300)}), True),
    ("labels-100", generation, set_("metadata.labels", {f"l{i}": "x" for i in range(100)}), True),
    ("annotations-over-256KiB", generation, set_("metadata.annotations", {"big": "x" * (256 * 1024)}), False),
    ("inline-text-at-bound", generation, set_("spec.evaluation", {"examples": [
        {"input": "i" * 4096, "output": "o" * (MAX_INLINE_TEXT // 10 - 4096)} for _ in range(9)]}), True),
    ("inline-text-over-bound", generation, set_("spec.evaluation", {"examples": [
        {"input": "i" * 4096, "output": "o" * 4096, "outputs": ["p" * 4096] * 2} for _ in range(5)]}), False),
    *((f"{field}-{value}-on-{base.__name__}", base, set_(f"spec.generation.{path}.{field}", value),
       base is classification)
      for path, field, value in (("annotation", "method", "likelihood"), ("annotation", "requirePseudoLabel", True),
                                 ("inputs", "labelSampling", "fill"), ("inputs", "poolSelection", "sameLabel"))
      for base in (classification, generation)),
    *((f"annotator-accuracy-on-{base.__name__}", base, set_("spec.evaluation", {
        "examples": [{"input": "a", "output": "b"}], "annotatorAccuracy": True}), base is classification)
      for base in (classification, generation)),
    *((f"evaluation-likelihood-on-{base.__name__}", base, set_("spec.evaluation", {
        "examples": [{"input": "a", "output": "b"}], "method": "likelihood"}), base is classification)
      for base in (classification, generation)),
    *((f"evaluation-calibration-{calibration}-with-{method}", classification, set_("spec.evaluation", {
        "examples": [{"input": "a", "output": "b"}], "method": method, "calibration": calibration}),
       method == "likelihood" or calibration == "none")
      for method in ("generate", "likelihood") for calibration in ("none", "batch")),
    ("evaluation-calibration-batch-alone", classification, set_("spec.evaluation", {
        "examples": [{"input": "a", "output": "b"}], "calibration": "batch"}), False),
    ("instruction-and-examples-over-bound", generation, set_("spec.task.examples", [
        {"input": "i" * 16_384, "output": "o" * 16_384}] * 2), False),
    # types as the API server checks them: no lax coercion of strings, booleans or numbers
    ("suspend-string", generation, set_("spec.suspend", "yes"), False),
    ("suspend-number", generation, set_("spec.suspend", 1), False),
    ("deadline-string", generation, set_("spec.activeDeadlineSeconds", "3600"), False),
    ("epochs-boolean", generation, set_("spec.training.epochs", True), False),
    ("epochs-float", generation, set_("spec.training.epochs", 2.5), False),
    ("epochs-whole-float", generation, set_("spec.training.epochs", 2.0), True),  # JSON has one number type
    ("learning-rate-string", generation, set_("spec.training.learningRate", "0.001"), False),
    ("learning-rate-integer", generation, set_("spec.training.learningRate", 1), True),
    ("trust-remote-code-string", generation, set_("spec.model.trustRemoteCode", "true"), False),
    ("temperature-string", generation, set_("spec.generation.inputs.temperature", "0.7"), False),
    ("label-number", classification, set_("spec.task.labels", ["positive", "negative", 3]), False),
    ("example-output-number", generation, set_("spec.task.examples", [{"input": "a", "output": 5}]), False),
    ("backend-enum", generation, set_("spec.generation.backend", "transformers"), True),
    ("backend-unknown", generation, set_("spec.generation.backend", "tgi"), False),
    # the operator's own variables are not a job's to set, at any level
    *((f"env-{name}-in-{where}", generation, set_(f"spec.{where}.env", [{"name": "A", "value": "1"},
                                                                      {"name": name, "value": "x"}]), False)
      for name in ("SELFGUIDE_TERMINATION_LOG", "SELFGUIDE_ANYTHING", "HOME", "HF_TOKEN", "OPENAI_API_KEY")
      for where in ("pod", "stages.train")),
    ("env-name-number", generation, set_("spec.pod.env", [{"name": 5, "value": "1"}]), False),
    ("env-name-256", generation, set_("spec.pod.env", [{"name": "N" * 256, "value": "1"}]), True),
    ("env-name-257", generation, set_("spec.pod.env", [{"name": "N" * 257, "value": "1"}]), False),
    ("env-selfguide-lowercase", generation, set_("spec.pod.env", [{"name": "selfguide_x", "value": "1"}]), True),
    ("env-pythonpath-is-the-policys-call", generation, set_("spec.pod.env", [{"name": "PYTHONPATH", "value": "/x"}]),
     True),
]


def server_accepts(kubectl, namespace: str, document: dict[str, Any]) -> tuple[bool, str]:
    result = kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(document),
                     check=False)
    return result.returncode == 0, result.stderr


def validate_accepts(document: dict[str, Any]) -> tuple[bool, str]:
    try:
        validate_object(document)
    except ManifestError as error:
        return False, str(error)
    return True, ""


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_validate_gives_the_models_answer(case):
    _, base, mutate, valid = case
    document = base()
    mutate(document)
    assert validate_accepts(document)[0] is valid, validate_accepts(document)


@pytest.mark.integration
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_api_server_and_validate_agree(selfguide_crd, kubectl, namespace, case):
    _, base, mutate, valid = case
    document = base()
    mutate(document)
    server, why = server_accepts(kubectl, namespace, document)
    assert server is valid, why
    assert validate_accepts(document) == (valid, validate_accepts(document)[1])


BOMB = """\
apiVersion: selfguide.dev/v1alpha1
kind: SelfGuideJob
metadata: {name: bomb}
spec:
  task: {instruction: x, examples: [{input: a, output: b}]}
  pod:
    affinity:
      a: &a [x, x, x, x, x, x, x, x, x]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
      h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
      i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_a_yaml_alias_bomb_is_refused_before_anything_is_built(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    assert len(BOMB) < 1024
    limit = 1 << 30  # a child with 1 GiB of address space: the bomb expanded would need several
    code = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}));"
            "from selfguide.manifest import load_manifest, ManifestError\n"
            "try:\n load_manifest(sys.argv[1])\nexcept ManifestError as e:\n print(e); sys.exit(2)")
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 2 and "aliases" in result.stdout, (result.stdout, result.stderr[-2000:])


def test_a_few_shared_anchors_are_fine():
    text = "a: &x {k: v}\nb: *x\nc: *x\n"
    assert parse_documents(text) == [{"a": {"k": "v"}, "b": {"k": "v"}, "c": {"k": "v"}}]
