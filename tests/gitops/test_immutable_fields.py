"""What a GitOps tool meets when `spec.task` changes in Git (docs/gitops.md), on the real API server: apply
and replace are rejected by the CRD's CEL rule; a forced replace (Argo CD's Force=true,Replace=true) recreates
the job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.harness.fixtures import Kubectl
from tests.operator.helpers import manifest

pytestmark = pytest.mark.integration


def test_a_task_change_is_rejected_unless_the_job_is_recreated(chart_crds, kubectl: Kubectl, namespace: str,
                                                                 tmp_path: Path):
    path = tmp_path / "job.yaml"
    job = manifest("demo")

    def sync(*verb: str, check: bool = True):
        path.write_text(yaml.safe_dump(job))
        return kubectl(*verb, "-n", namespace, "-f", str(path), check=check)

    def live() -> dict:
        return json.loads(kubectl("get", "sgj/demo", "-n", namespace, "-o", "json").stdout)

    sync("apply", "--server-side")
    job["spec"]["suspend"] = True
    sync("apply", "--server-side")  # mutable fields change in place
    uid = live()["metadata"]["uid"]

    job["spec"]["task"]["instruction"] = "Reverse the letters of every word."
    for verb in (("apply", "--server-side"), ("apply",), ("replace",)):
        result = sync(*verb, check=False)
        assert result.returncode, verb
        assert "task is immutable; create a new SelfGuideJob instead" in result.stderr
    sync("replace", "--force")
    recreated = live()
    assert recreated["metadata"]["uid"] != uid
    assert recreated["spec"]["task"]["instruction"] == "Reverse the letters of every word."
