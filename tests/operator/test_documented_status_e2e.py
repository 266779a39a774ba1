"""docs/operator.md shows `kubectl get sgj` and `kubectl get sgj -o yaml` of a finished job of this test cluster
(scripted stages reporting progress, the quality gate, serving). This test runs that job again and checks that
every status field the documentation shows exists in the real status, so the example cannot drift.
SELFGUIDE_DOCS_CAPTURE=<file> writes the fresh output there, for pasting into the documentation."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.controlplane import free_port
from tests.harness.fixtures import Kubectl
from tests.operator.helpers import ROOT, SelfGuideJobs, manifest, stage_env

pytestmark = pytest.mark.e2e

DOC = ROOT / "docs" / "operator.md"


def documented_status() -> dict[str, Any]:
    """The status of the YAML block under '### A finished job' in docs/operator.md."""
    section = DOC.read_text().split("### A finished job", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block, "docs/operator.md: no YAML block under '### A finished job'"
    return yaml.safe_load(block.group(1))["status"]


def paths(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        return {p for k, v in value.items() for p in {f"{prefix}.{k}"} | paths(v, f"{prefix}.{k}")}
    if isinstance(value, list):
        return {p for item in value for p in paths(item, prefix + "[]")}
    return set()


def test_the_documented_kubectl_output_is_what_a_finished_job_shows(
        start_operator, sgjs: SelfGuideJobs, output_claim: Path, kubectl: Kubectl, namespace: str):
    port = free_port()
    start_operator(namespace, SELFGUIDE_PROGRESS_PORT=str(port), SELFGUIDE_PROGRESS_URL=f"http://127.0.0.1:{port}",
                   SELFGUIDE_PROGRESS_SECONDS="1")
    document = manifest("demo", evaluation={"examples": [{"input": "c d", "output": "d c"}],
                                            "gate": {"minImprovement": 2}},
                        pod={"env": stage_env(FAKE_STAGE_SECONDS="4", FAKE_STAGE_STEPS="4",
                                              FAKE_STAGE_SCORES="50,100")})
    sgjs.create(document)
    running = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not running:
        status = sgjs.status("demo")
        if any(s["phase"] == "Running" and 0 < (s.get("progress") or {}).get("percent", 0) < 100
               for s in status.get("stages") or []):
            running = kubectl("get", "sgj", "-n", namespace).stdout
        time.sleep(0.3)
    sgjs.wait_phase("demo", "Succeeded", "Failed", timeout=120)
    finished = kubectl("get", "sgj", "-n", namespace).stdout
    wide = kubectl("get", "sgj", "-n", namespace, "-o", "wide").stdout
    full = kubectl("get", "sgj", "demo", "-n", namespace, "-o", "yaml").stdout
    if capture := os.environ.get("SELFGUIDE_DOCS_CAPTURE"):
        Path(capture).write_text(f"{running}\n{finished}\n{wide}\n{full}")
    assert running and "Running" in running
    real = yaml.safe_load(full)["status"]
    missing = sorted(paths(documented_status()) - paths(real))
    assert not missing, f"docs/operator.md shows status fields a real job does not have: {missing}"
