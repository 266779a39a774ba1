"""A spec edited while a stage runs, on the test cluster: status keeps saying which generation its results come
from, and never claims the new spec's results before a stage ran with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfguide.contract.confighash import spec_hash
from selfguide.spec import SelfGuideJobSpec
from tests.harness.waiting import wait_for
from tests.operator.helpers import SelfGuideJobs, manifest, stage_env

pytestmark = pytest.mark.e2e


def stages(status: dict) -> dict[str, dict]:
    return {s["name"]: s for s in status.get("stages") or []}


def test_a_spec_edited_mid_run_does_not_make_status_claim_the_new_specs_results(
        start_operator, sgjs: SelfGuideJobs, output_claim: Path, namespace: str):
    start_operator(namespace)
    sgjs.create(manifest("edited", evaluation=None, pod={"env": stage_env(FAKE_STAGE_SECONDS="6")}))
    wait_for(lambda: (s := stages(sgjs.status("edited")).get("generate")) and s["phase"] == "Running",
             "generate to run", timeout=60)
    sgjs.patch_spec("edited", {"generation": {"seed": 7}})  # read by generate, which runs with seed 0
    status = sgjs.wait_phase("edited", "Succeeded", "Failed", timeout=120)
    body = sgjs.get("edited")
    spec = SelfGuideJobSpec.model_validate(body["spec"])
    assert body["metadata"]["generation"] == 2 and status["phase"] == "Succeeded"
    generate, train = stages(status)["generate"], stages(status)["train"]
    assert generate["generation"] == 1 and generate["configHash"] != spec_hash(spec, "generate")
    assert train["generation"] == 2 and train["configHash"] == spec_hash(spec, "train")
    assert status["observedGeneration"] == 1  # the training data came from generation 1's spec

    sgjs.create(manifest("retrained", evaluation=None, pod={"env": stage_env(FAKE_STAGE_SECONDS="6")}))
    wait_for(lambda: (s := stages(sgjs.status("retrained")).get("generate")) and s["phase"] == "Running",
             "generate to run", timeout=60)
    sgjs.patch_spec("retrained", {"training": {"epochs": 1}})  # only train reads it, and train has not started
    status = sgjs.wait_phase("retrained", "Succeeded", "Failed", timeout=120)
    assert sgjs.get("retrained")["metadata"]["generation"] == 2 and status["observedGeneration"] == 2
    assert stages(status)["generate"]["generation"] == 1 and stages(status)["train"]["generation"] == 2
