"""The operator running the real `selfguide stage` commands in stage pods, on the bundled model (CPU)."""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from selfguide.engine.models import cache_root
from tests.harness.controlplane import free_port
from tests.harness.fixtures import Kubectl
from tests.operator.helpers import VENV_BIN, load_example, manifest
from tests.stage_runs import TINY_GENERATION

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def real_stages(monkeypatch: pytest.MonkeyPatch, namespace: str, make_pvc: Callable[..., Path]) -> dict[str, Any]:
    """Stage pods find `selfguide` on PATH (the fake kubelet passes this process's environment on), and a model
    cache claim that holds the converted bundled model, so stages do not convert it again."""
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    cache = make_pvc(namespace, "model-cache")
    (cache / "selfguide").mkdir()
    models = cache_root() / "models"
    models.mkdir(parents=True, exist_ok=True)
    (cache / "selfguide" / "models").symlink_to(models)
    return {"claimName": "model-cache"}


def tiny(document: dict[str, Any]) -> dict[str, Any]:
    """The sentiment example with a budget that takes a couple of minutes on two CPU cores."""
    spec = document["spec"]
    spec["generation"] = copy.deepcopy(TINY_GENERATION)  # the smallest budget known to yield an example...
    spec["generation"]["inputs"]["maxRounds"] = 3  # ...over rounds long enough to watch progress move
    spec["training"]["epochs"] = 1
    spec["evaluation"]["examples"] = spec["evaluation"]["examples"][:2]
    spec["evaluation"].pop("gate")  # two items cannot pass it: this test is about the cluster path, not quality
    return document


def test_the_sentiment_example_trains_an_adapter_on_the_cluster(start_operator, sgjs, output_claim: Path,
                                                                real_stages, kubectl: Kubectl, namespace: str,
                                                                tmp_path: Path):
    document = tiny(load_example("examples/sentiment-classification.yaml"))
    document["spec"]["modelCache"] = real_stages
    path = tmp_path / "sentiment.yaml"
    path.write_text(yaml.safe_dump(document))
    port = free_port()  # the real stages report live progress, authenticated by their projected token
    start_operator(namespace, fake_stages=False, SELFGUIDE_PROGRESS_PORT=str(port),
                   SELFGUIDE_PROGRESS_URL=f"http://127.0.0.1:{port}", SELFGUIDE_PROGRESS_SECONDS="1",
                   SELFGUIDE_POLICY=json.dumps({"allowedClaims": [real_stages["claimName"]]}))
    kubectl("apply", "-n", namespace, "-f", str(path))
    seen: set[tuple[str, float]] = set()
    deadline = time.monotonic() + 480
    while time.monotonic() < deadline and sgjs.status("sentiment").get("phase") not in ("Succeeded", "Failed"):
        for stage in sgjs.status("sentiment").get("stages") or []:
            if stage["phase"] == "Running" and stage.get("progress"):
                seen.add((stage["name"], stage["progress"]["percent"]))
        time.sleep(0.5)
    kubectl("wait", "--for=condition=Complete", "sgj/sentiment", "-n", namespace, "--timeout=10s", timeout=20)

    status = sgjs.status("sentiment")
    moving = sorted((name, percent) for name, percent in seen if 0 < percent < 100)
    assert len(moving) >= 2, f"progress seen while the real stages ran: {sorted(seen)}"
    progress = {s["name"]: s["progress"] for s in status["stages"]}
    assert all(p["percent"] == 100 for p in progress.values()), progress
    assert progress["generate"]["roundsTotal"] == 3 and progress["generate"]["inputsGenerated"] == 12
    assert progress["train"]["stepsTotal"] >= 1 and progress["train"]["loss"] > 0
    assert progress["evaluate"]["itemsScored"] == progress["evaluate"]["itemsTotal"] == 4
    assert status["training"]["wallSeconds"] > 0 and status["generation"]["funnel"][0]["entered"] == 12
    adapter = output_claim / namespace / "sentiment" / "train" / "adapter"
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    assert status["outputs"]["adapter"] == f"pvc://selfguide-data/{namespace}/sentiment/train/adapter"
    assert status["generation"]["candidates"] == 12
    assert status["evaluation"]["examples"] == 2 and "finetuned" in status["evaluation"]
    assert [s["phase"] for s in status["stages"]] == ["Succeeded"] * 3


def test_a_missing_model_fails_fast_as_a_permanent_error(start_operator, sgjs, output_claim, real_stages,
                                                         namespace: str):
    start_operator(namespace, fake_stages=False)
    sgjs.create(manifest("lost", model={"name": "/nonexistent/model"}))
    status = sgjs.wait_phase("lost", "Failed", timeout=120)
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "PermanentError"
    assert "/nonexistent/model" in failed["message"] and "does not exist" in failed["message"]
    assert status["stages"][0]["attempts"] == 1
