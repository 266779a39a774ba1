"""Every accepted SelfGuideJob ends with a reason: manifests the CRD accepts but the Job or ConfigMap API refuses,
stages whose pod never starts, objects the job does not own, a spec made invalid mid-run. All on the test cluster
(API server, controllers, scheduler, fake GPU kubelet) with the operator as a subprocess."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness.fixtures import Kubectl
from tests.harness.waiting import wait_for
from tests.operator.helpers import SelfGuideJobs, manifest
from tests.operator.test_operator_e2e import children, condition, stage

pytestmark = pytest.mark.e2e


def events(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    out = kubectl("get", "events", "-n", namespace, "--field-selector",
                  f"involvedObject.kind=SelfGuideJob,involvedObject.name={name}", "-o", "json").stdout
    return json.loads(out)["items"]


def failed_with(sgjs: SelfGuideJobs, name: str, reason: str, timeout: float = 60) -> dict[str, Any]:
    status = sgjs.wait_phase(name, "Failed", timeout=timeout)
    assert condition(status, "Failed")["reason"] == reason, status
    return status


@pytest.mark.parametrize(("labels", "spec", "detail"), [
    ({"controller-uid": "copied"}, {}, "controller-uid"),
    ({}, {"pod": {"resources": {"requests": {"cpu": "-1"}}}}, "must be greater than or equal to 0"),
    ({}, {"stages": {"generate": {"resources": {"requests": {"nvidia.com/gpu": "2"}}}}}, "nvidia.com/gpu"),
], ids=["reserved-label", "negative-cpu", "gpu-request-without-limit"])
def test_a_stage_job_the_api_refuses_fails_the_job_with_the_api_message_and_an_event(
        start_operator, sgjs, output_claim, kubectl, namespace, labels, spec, detail):
    start_operator(namespace)
    document = manifest("refused", **spec)
    document["metadata"]["labels"] = labels
    sgjs.create(document)
    status = failed_with(sgjs, "refused", "InvalidStageJob")
    assert detail in condition(status, "Failed")["message"]
    warnings = [e for e in events(kubectl, namespace, "refused") if e["reason"] == "InvalidStageJob"]
    assert warnings and warnings[0]["type"] == "Warning" and detail in warnings[0]["message"]


def test_a_foreign_spec_config_map_is_neither_adopted_nor_deleted(start_operator, sgjs, output_claim, kubectl,
                                                                   namespace):
    kubectl("create", "configmap", "taken-spec", "-n", namespace, "--from-literal=precious=data")
    start_operator(namespace)
    sgjs.create(manifest("taken"))
    status = failed_with(sgjs, "taken", "NameConflict")
    assert "taken-spec" in condition(status, "Failed")["message"]
    assert any(e["reason"] == "NameConflict" for e in events(kubectl, namespace, "taken"))
    kubectl("delete", "sgj/taken", "-n", namespace, "--timeout=30s")
    config_map = json.loads(kubectl("get", "configmap", "taken-spec", "-n", namespace, "-o", "json").stdout)
    assert config_map["data"] == {"precious": "data"} and not config_map["metadata"].get("ownerReferences")


def test_a_foreign_stage_job_ends_the_job_with_a_name_conflict(start_operator, sgjs, output_claim, kubectl,
                                                               namespace):
    kubectl("create", "job", "clash-generate", "-n", namespace, "--image=busybox", "--", "sleep", "600")
    start_operator(namespace)
    sgjs.create(manifest("clash"))
    status = failed_with(sgjs, "clash", "NameConflict")
    assert "clash-generate" in condition(status, "Failed")["message"]
    foreign = json.loads(kubectl("get", "job", "clash-generate", "-n", namespace, "-o", "json").stdout)
    assert not foreign["metadata"].get("ownerReferences")


def test_a_stage_whose_pod_cannot_be_scheduled_is_pending_with_the_reason_then_times_out(
        start_operator, sgjs, output_claim, kubectl, namespace):
    start_operator(namespace)
    sgjs.create(manifest("greedy", stages={"generate": {"resources": {"limits": {"nvidia.com/gpu": "1000"}}}}))
    status = wait_for(lambda: (s := sgjs.status("greedy")).get("stages")
                      and "Insufficient nvidia.com/gpu" in (stage(s, "generate").get("message") or "") and s,
                      "the unschedulable reason in the stage message", timeout=60)
    assert status["phase"] == "Pending" and stage(status, "generate")["phase"] == "Pending"
    assert condition(status, "Running")["status"] == "False"
    assert "Unschedulable" in stage(status, "generate")["message"]
    sgjs.patch_spec("greedy", {"pendingTimeoutSeconds": 1})
    status = failed_with(sgjs, "greedy", "PendingTimeout")
    assert "Insufficient nvidia.com/gpu" in condition(status, "Failed")["message"]
    wait_for(lambda: not children(kubectl, namespace, "greedy", "jobs"), "the pending stage Job to be deleted",
             timeout=30)


def test_a_stage_without_its_output_claim_waits_with_the_reason(start_operator, sgjs, output_claim, namespace):
    start_operator(namespace, SELFGUIDE_POLICY='{"allowedClaims": ["no-such-claim"]}')
    sgjs.create(manifest("claimless", output={"claimName": "no-such-claim"}))
    status = wait_for(lambda: (s := sgjs.status("claimless")).get("stages")
                      and "no-such-claim" in (stage(s, "generate").get("message") or "") and s,
                      "the missing claim in the stage message", timeout=60)
    assert status["phase"] == "Pending" and stage(status, "generate")["phase"] == "Pending"


def test_a_pod_the_namespace_refuses_is_reported_as_failed_create(start_operator, sgjs, output_claim, kubectl,
                                                                  namespace):
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    # the operator's policy allows the capability; the namespace's Pod Security level does not
    start_operator(namespace, SELFGUIDE_POLICY='{"allowedCapabilities": ["NET_ADMIN"]}')
    sgjs.create(manifest("refusedpod", pod={"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}))
    status = wait_for(lambda: (s := sgjs.status("refusedpod")).get("stages")
                      and "FailedCreate" in (stage(s, "generate").get("message") or "") and s,
                      "FailedCreate in the stage message", timeout=60)
    assert status["phase"] == "Pending" and "forbidden" in stage(status, "generate")["message"]


def test_a_failure_after_a_stage_ran_keeps_the_history_and_clears_what_no_longer_holds(
        start_operator, sgjs, output_claim, kubectl, namespace):
    kubectl("create", "job", "later-train", "-n", namespace, "--image=busybox", "--", "sleep", "600")
    start_operator(namespace)
    sgjs.create(manifest("later"))
    status = failed_with(sgjs, "later", "NameConflict")
    assert [(s["name"], s["phase"]) for s in status["stages"]] == [
        ("generate", "Succeeded"), ("train", "Pending"), ("evaluate", "Pending")]
    assert status["generation"]["examples"] == 8 and status["outputs"]["dataset"].endswith("generate/train.jsonl")
    assert status["progress"] == "1/3" and status["completionTime"] and status["stage"] == "train"


def test_a_spec_too_large_for_its_config_map_fails_the_job_as_spec_too_large(start_operator, sgjs, output_claim,
                                                                            kubectl, namespace):
    start_operator(namespace)
    affinity = {"nodeAffinity": {"x-padding": ["p" * 1000] * 1100}}  # 1.1 MB: etcd takes it, a ConfigMap not
    sgjs.create(manifest("huge", pod={"affinity": affinity}))
    status = failed_with(sgjs, "huge", "SpecTooLarge")
    assert "bytes" in condition(status, "Failed")["message"]
    assert not children(kubectl, namespace, "huge", "jobs")


@pytest.mark.parametrize("garbage", ["not json {", "[1, 2]", '{"started": "garbage"}', '{"started": 5, "retries": "x"}'],
                         ids=["not-json", "not-an-object", "bad-time", "bad-kinds"])
def test_kopfs_annotations_set_to_garbage_by_the_jobs_owner_cannot_wedge_it(
        start_operator, sgjs, output_claim, kubectl, namespace, garbage):
    """Whoever may edit a SelfGuideJob may edit kopf's annotations on it: the job still runs to its end, and
    `kubectl delete` still completes (the finalizer is removed), with a warning instead of a traceback per event."""
    operator = start_operator(namespace)
    sgjs.create(manifest("wedge"))
    wait_for(lambda: "selfguide.dev/last-handled-configuration" in (
        sgjs.get("wedge")["metadata"].get("annotations") or {}), "kopf's annotations", timeout=60)
    kubectl("annotate", "--overwrite", "-n", namespace, "sgj/wedge",
            f"selfguide.dev/last-handled-configuration={garbage}", f"selfguide.dev/reconcile={garbage}")
    assert sgjs.wait_phase("wedge", "Succeeded", "Failed", timeout=120)["phase"] == "Succeeded"
    kubectl("delete", "sgj/wedge", "-n", namespace, "--timeout=60s")
    assert "is not one kopf can read; ignored" in operator.logs()
    assert "Traceback" not in operator.logs()
