"""The status carries what kstatus (Flux's health checks) reads: observedGeneration and the abnormal-true
conditions Reconciling and Stalled, with Ready as the normal-true summary."""

from __future__ import annotations

from typing import Any

import pytest

from tests.gitops.samples import SITUATIONS

OBSERVED = [name for name, obj in SITUATIONS.items() if "status" in obj]


def kstatus(obj: dict[str, Any]) -> str:
    """kstatus' verdict on a custom resource (sigs.k8s.io/cli-utils/pkg/kstatus/status,
    checkGenericProperties: a kind it has no rules for is judged by observedGeneration, then by Reconciling
    and Stalled, else it is Current)."""
    status = obj.get("status") or {}
    if "observedGeneration" in status and status["observedGeneration"] != obj["metadata"]["generation"]:
        return "InProgress"
    for condition in status.get("conditions", []):
        if condition["status"] == "True" and condition["type"] == "Reconciling":
            return "InProgress"
        if condition["status"] == "True" and condition["type"] == "Stalled":
            return "Failed"
    return "Current"


@pytest.mark.parametrize(("situation", "expected"), [
    ("pending", "InProgress"), ("running", "InProgress"), ("edited", "InProgress"),
    ("succeeded", "Current"), ("failed", "Failed"), ("suspended", "Current"),
])
def test_kstatus_reads_each_situation_as_flux_should_report_it(situation: str, expected: str):
    assert kstatus(SITUATIONS[situation]) == expected


@pytest.mark.parametrize("situation", OBSERVED)
def test_every_status_has_ready_reconciling_and_stalled_for_the_generation_it_observed(situation: str):
    status = SITUATIONS[situation]["status"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert {"Ready", "Reconciling", "Stalled"} <= conditions.keys()
    for condition in conditions.values():
        assert condition["observedGeneration"] == status["observedGeneration"] == 1
        assert condition["status"] in ("True", "False")
        assert condition["reason"] and condition["lastTransitionTime"]
    true = [kind for kind in ("Ready", "Reconciling", "Stalled") if conditions[kind]["status"] == "True"]
    assert len(true) <= 1, true  # Ready, still working, or stuck: never two at once
    assert (true == ["Ready"]) == (status["phase"] == "Succeeded")
    assert (true == ["Stalled"]) == (status["phase"] == "Failed")
