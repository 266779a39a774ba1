"""The operator on the test cluster (controllers, scheduler, fake GPU kubelet), with stage pods running the test
double tests/operator/fake_stage.py: lifecycle, failures, suspension, deletion, restarts and load."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.fixtures import Kubectl
from tests.harness.waiting import wait_for
from tests.operator.fake_stage import RESULTS
from tests.operator.helpers import SelfGuideJobs, manifest, stage_env

pytestmark = pytest.mark.e2e


def children(kubectl: Kubectl, namespace: str, name: str, kinds: str = "jobs,configmaps") -> list[dict[str, Any]]:
    out = kubectl("get", kinds, "-n", namespace, "-l", f"selfguide.dev/job={name}", "-o", "json").stdout
    return json.loads(out)["items"]


def live_pods(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    return [p for p in children(kubectl, namespace, name, "pods")
            if p["status"].get("phase") in ("Pending", "Running") and not p["metadata"].get("deletionTimestamp")]


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def stage(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in status["stages"] if s["name"] == name)


def running(sgjs: SelfGuideJobs, name: str, stage_name: str = "generate") -> dict[str, Any]:
    return wait_for(lambda: (s := sgjs.status(name)).get("stages") and stage(s, stage_name)["phase"] == "Running"
                    and s, f"stage {stage_name} of {name} to run", timeout=60)


def test_a_job_runs_its_stages_in_order_and_reports_outputs_metrics_and_events(
        start_operator, sgjs, output_claim: Path, kubectl: Kubectl, namespace: str):
    operator = start_operator(namespace)
    document = manifest("demo")
    document["metadata"]["labels"] = {"team": "nlp", "app.kubernetes.io/instance": "argo-app",
                                      "argocd.argoproj.io/instance": "apps"}
    sgjs.create(document)
    kubectl("wait", "--for=condition=Complete", "sgj/demo", "-n", namespace, "--timeout=60s", timeout=70)

    status = sgjs.status("demo")
    assert status["phase"] == "Succeeded" and status["progress"] == "3/3" and status["observedGeneration"] == 1
    assert status["outputs"] == {"dataset": f"pvc://selfguide-data/{namespace}/demo/generate/train.jsonl",
                                 "adapter": f"pvc://selfguide-data/{namespace}/demo/train/adapter",
                                 "baseModel": "bundled://smollm2-135m-instruct",
                                 "serving": f"pvc://selfguide-data/{namespace}/demo/serving",
                                 "report": f"pvc://selfguide-data/{namespace}/demo/evaluate/report.json"}
    cost = {"wallSeconds", "gpus", "gpuSeconds"}
    assert {k: v for k, v in status["generation"].items() if k not in cost} == RESULTS["generate"].to_camel_dict()
    assert status["training"]["gpus"] == 1 and status["training"]["gpuSeconds"] == status["training"]["wallSeconds"]
    assert status["evaluation"]["delta"] == 50 and status["training"]["finalLoss"] == 1.25
    assert [(s["name"], s["phase"], s["attempts"]) for s in status["stages"]] == [
        ("generate", "Succeeded", 1), ("train", "Succeeded", 1), ("evaluate", "Succeeded", 1)]
    assert condition(status, "Ready")["status"] == "True" and condition(status, "Stalled")["status"] == "False"
    workdir = output_claim / namespace / "demo"
    assert all((workdir / path).is_file() for path in ("generate/train.jsonl", "train/adapter/adapter_config.json",
                                                       "evaluate/report.json"))

    jobs = [c for c in children(kubectl, namespace, "demo") if c["kind"] == "Job"]
    assert sorted(j["metadata"]["labels"]["selfguide.dev/stage"] for j in jobs) == ["evaluate", "generate", "train"]
    for job in jobs:
        assert job["metadata"]["ownerReferences"][0]["controller"] is True
        assert job["metadata"]["labels"]["team"] == "nlp"
        assert not {"app.kubernetes.io/instance", "argocd.argoproj.io/instance"} & job["metadata"]["labels"].keys()
    annotations = sgjs.get("demo")["metadata"]["annotations"]
    assert "selfguide.dev/last-handled-configuration" in annotations
    assert not [a for a in annotations if a.startswith("kopf.zalando.org")]

    events = json.loads(kubectl("get", "events", "-n", namespace, "--field-selector",
                                "involvedObject.kind=SelfGuideJob,involvedObject.name=demo", "-o", "json").stdout)
    reasons = [e["reason"] for e in events["items"]]
    assert reasons.count("StageStarted") == 3 and reasons.count("StageSucceeded") == 3 and "Completed" in reasons

    metrics = urllib.request.urlopen(operator.metrics_url, timeout=5).read().decode()
    assert 'selfguide_jobs{phase="Succeeded"} 1.0' in metrics
    assert 'selfguide_stage_duration_seconds_count{result="Succeeded",stage="train"} 1.0' in metrics
    health = json.loads(urllib.request.urlopen(operator.health_url, timeout=5).read())
    assert "selfguidejobs_tracked" in health


def test_a_permanent_failure_fails_the_job_at_once_with_the_stage_error(start_operator, sgjs, output_claim,
                                                                       namespace):
    start_operator(namespace)
    sgjs.create(manifest("broken", pod={"env": stage_env(FAKE_STAGE_FAIL="train:permanent")}))
    status = sgjs.wait_phase("broken", "Failed")
    failed = condition(status, "Failed")
    assert failed["reason"] == "PermanentError"
    assert failed["message"] == "stage train failed: fake permanent failure of broken"
    assert [(s["phase"], s["attempts"]) for s in status["stages"][:2]] == [("Succeeded", 1), ("Failed", 1)]
    assert condition(status, "Stalled")["status"] == "True" and status["stage"] == "train"


def test_a_retryable_failure_is_retried_then_fails_with_a_reason(start_operator, sgjs, output_claim, namespace):
    start_operator(namespace)
    sgjs.create(manifest("flaky", pod={"env": stage_env(FAKE_STAGE_FAIL="generate:retryable")},
                         stages={"generate": {"backoffLimit": 1}}))
    status = sgjs.wait_phase("flaky", "Failed", timeout=90)
    assert condition(status, "Failed")["reason"] == "BackoffLimitExceeded"
    assert stage(status, "generate")["attempts"] == 2
    assert stage(status, "generate")["message"] == "fake retryable failure of flaky"


def test_suspend_stops_the_running_stage_and_resume_completes_the_job(start_operator, sgjs, output_claim,
                                                                     kubectl, namespace):
    start_operator(namespace)
    sgjs.create(manifest("pausable", evaluation=None, stages={"generate": {"env": stage_env(FAKE_STAGE_SECONDS="5")}}))
    running(sgjs, "pausable")
    sgjs.patch_spec("pausable", {"suspend": True})
    status = sgjs.wait_phase("pausable", "Suspended", timeout=30)
    assert condition(status, "Suspended")["status"] == "True"
    job = wait_for(lambda: (j := children(kubectl, namespace, "pausable", "jobs")) and j[0]["spec"]["suspend"] and j,
                   "the stage Job to be suspended", timeout=30)
    assert [j["metadata"]["name"] for j in job] == ["pausable-generate"]
    wait_for(lambda: not live_pods(kubectl, namespace, "pausable"), "the stage pod to be deleted", timeout=30)

    sgjs.patch_spec("pausable", {"suspend": False})
    status = sgjs.wait_phase("pausable", "Succeeded", timeout=60)
    assert status["progress"] == "2/2"


def test_deleting_a_running_job_removes_its_children(start_operator, sgjs, output_claim, kubectl, namespace):
    start_operator(namespace)
    sgjs.create(manifest("doomed", stages={"generate": {"env": stage_env(FAKE_STAGE_SECONDS="60")}}))
    running(sgjs, "doomed")
    assert sgjs.get("doomed")["metadata"]["finalizers"] == ["selfguide.dev/finalizer"]  # kopf's, renamed
    kubectl("delete", "sgj/doomed", "-n", namespace, "--timeout=30s")
    wait_for(lambda: not children(kubectl, namespace, "doomed", "jobs,configmaps,pods"),
             "garbage collection of the stage Job, its pod and the spec ConfigMap", timeout=60)


def test_restarting_the_operator_mid_stage_creates_no_duplicates(start_operator, sgjs, output_claim, kubectl,
                                                                 namespace):
    first = start_operator(namespace)
    sgjs.create(manifest("survivor", stages={"generate": {"env": stage_env(FAKE_STAGE_SECONDS="4")}}))
    running(sgjs, "survivor")
    generate_uid = children(kubectl, namespace, "survivor", "jobs")[0]["metadata"]["uid"]
    first.stop(signal.SIGKILL)
    start_operator(namespace)
    status = sgjs.wait_phase("survivor", "Succeeded", timeout=60)
    jobs = children(kubectl, namespace, "survivor", "jobs")
    assert sorted(j["metadata"]["name"] for j in jobs) == ["survivor-evaluate", "survivor-generate", "survivor-train"]
    assert next(j for j in jobs if j["metadata"]["name"] == "survivor-generate")["metadata"]["uid"] == generate_uid
    assert [s["attempts"] for s in status["stages"]] == [1, 1, 1]


def test_twenty_jobs_applied_at_once_all_complete(start_operator, sgjs, output_claim, kubectl, namespace):
    start_operator(namespace)
    names = [f"bulk-{i}" for i in range(20)]
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(manifest(n) for n in names))
    for name in names:
        assert sgjs.wait_phase(name, "Succeeded", "Failed", timeout=180)["phase"] == "Succeeded"
    assert len(json.loads(kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"]) == 60


def test_ttl_after_finished_deletes_the_children_but_keeps_the_job(start_operator, sgjs, output_claim, kubectl,
                                                                   namespace):
    start_operator(namespace)
    sgjs.create(manifest("short-lived", evaluation=None, ttlSecondsAfterFinished=1))
    sgjs.wait_phase("short-lived", "Succeeded")
    wait_for(lambda: not children(kubectl, namespace, "short-lived"), "the children to be deleted", timeout=30)
    assert sgjs.status("short-lived")["phase"] == "Succeeded"


def test_the_deadline_fails_the_job_and_stops_its_stage(start_operator, sgjs, output_claim, kubectl, namespace):
    start_operator(namespace)
    sgjs.create(manifest("slow", activeDeadlineSeconds=3,
                         stages={"generate": {"env": stage_env(FAKE_STAGE_SECONDS="60")}}))
    status = sgjs.wait_phase("slow", "Failed", timeout=30)
    assert condition(status, "Failed")["reason"] == "DeadlineExceeded"
    wait_for(lambda: not live_pods(kubectl, namespace, "slow"), "the stage pod to stop", timeout=30)


def test_kueue_admits_the_stage_jobs_the_operator_creates_suspended(start_operator, sgjs, output_claim, kubectl,
                                                                    namespace):
    start_operator(namespace)
    document = manifest("queued", evaluation=None)
    document["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "gpu-queue"}
    sgjs.create(document)
    for name in ("queued-generate", "queued-train"):
        job = wait_for(lambda name=name: next((j for j in children(kubectl, namespace, "queued", "jobs")
                                               if j["metadata"]["name"] == name), None), f"Job {name}", timeout=30)
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
        time.sleep(2)  # several resyncs: the operator must leave admission to Kueue
        assert kubectl("get", "job", name, "-n", namespace, "-o", "jsonpath={.spec.suspend}").stdout == "true"
        assert sgjs.status("queued")["phase"] in ("Pending", "Running")
        kubectl("patch", "job", name, "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')  # admit
    assert sgjs.wait_phase("queued", "Succeeded")["progress"] == "2/2"
