"""Live progress on the test cluster: stage pods (the scripted stage, reporting through the real tracker and HTTP
reporter of `selfguide.contract.progress`) send reports authenticated by a projected, audience-bound token;
the operator checks them with a TokenReview and puts them into status, where `kubectl get sgj` shows them.
Stage pods' service account can neither read nor write the API, and the progress token is useless against it."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from selfguide.contract.progress import PROGRESS_AUDIENCE, report_path
from tests.harness.controlplane import free_port
from tests.harness.fixtures import Cluster, Kubectl
from tests.harness.waiting import wait_for
from tests.operator.helpers import SelfGuideJobs, manifest, post, stage_env

pytestmark = pytest.mark.e2e


def progress_operator(start_operator, namespace: str) -> str:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    start_operator(namespace, SELFGUIDE_PROGRESS_PORT=str(port), SELFGUIDE_PROGRESS_URL=url,
                   SELFGUIDE_PROGRESS_SECONDS="1")
    return url


def running_stage(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((s for s in status.get("stages") or [] if s["phase"] == "Running"), None)


def test_progress_moves_while_a_stage_runs_reaches_100_and_shows_in_kubectl(
        start_operator, sgjs: SelfGuideJobs, output_claim: Path, kubectl: Kubectl, namespace: str):
    progress_operator(start_operator, namespace)
    sgjs.create(manifest("live", evaluation=None,
                         pod={"env": stage_env(FAKE_STAGE_SECONDS="10", FAKE_STAGE_STEPS="10")}))
    seen: dict[str, list[float]] = {}
    columns: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = sgjs.status("live")
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        stage = running_stage(status)
        if stage and stage.get("progress"):
            seen.setdefault(stage["name"], []).append(stage["progress"]["percent"])
            if stage["name"] == "train" and 0 < stage["progress"]["percent"] < 100 and not columns:
                columns = kubectl("get", "sgj", "live", "-n", namespace).stdout.splitlines()
                assert stage["progress"]["stepsTotal"] == 10 and stage["progress"]["loss"] > 0
                assert stage["progress"]["etaSeconds"] >= 0 and stage["progress"]["elapsedSeconds"] > 0
        time.sleep(0.3)
    status = sgjs.status("live")
    assert status["phase"] == "Succeeded", status
    for name in ("generate", "train"):
        values = seen.get(name, [])
        assert len({v for v in values if 0 < v < 100}) >= 3, f"{name}: progress seen {values}"
        assert values == sorted(values), f"{name}: progress went back: {values}"
    finished = {s["name"]: s["progress"] for s in status["stages"]}
    assert all(p["percent"] == 100 and p["etaSeconds"] == 0 for p in finished.values()), finished
    assert finished["train"]["step"] == 10 and finished["train"]["stepsTotal"] == 10
    assert finished["generate"]["roundsDone"] == finished["generate"]["roundsTotal"] == 10
    header, row = columns[0].split(), columns[1].split()
    assert header[:6] == ["NAME", "PHASE", "STAGE", "PROGRESS", "STAGE%", "ETA(S)"], columns
    assert row[1] == "Running" and row[2] == "train" and 0 < float(row[4]) < 100, columns


def test_reports_without_a_valid_pod_token_are_refused_and_stage_pods_cannot_use_the_api(
        start_operator, sgjs: SelfGuideJobs, output_claim: Path, kubectl: Kubectl, namespace: str,
        tmp_path: Path, cluster: Cluster):
    url = progress_operator(start_operator, namespace)
    sgjs.create(manifest("guarded", evaluation=None,
                         pod={"env": stage_env(FAKE_STAGE_SECONDS="20", FAKE_STAGE_STEPS="20")}))
    endpoint = url + report_path(namespace, "guarded", "generate")
    report = {"percent": 99.0}
    assert post(endpoint, report) == 401  # no token
    assert post(endpoint, report, "not-a-token") == 401
    api_token = kubectl("create", "token", "default", "-n", namespace).stdout.strip()
    assert post(endpoint, report, api_token) == 401  # the API's audience is not the progress audience
    unbound = kubectl("create", "token", "default", "-n", namespace, f"--audience={PROGRESS_AUDIENCE}").stdout.strip()
    assert post(endpoint, report, unbound) == 401  # right audience, but bound to no pod

    # a token bound to another pod of the namespace (not this job's stage pod)
    kubectl("run", "intruder", "-n", namespace, "--image=busybox", "--restart=Never", "--", "sleep", "60")
    uid = json.loads(kubectl("get", "pod", "intruder", "-n", namespace, "-o", "json").stdout)["metadata"]["uid"]
    bound = kubectl("create", "token", "default", "-n", namespace, f"--audience={PROGRESS_AUDIENCE}",
                    "--bound-object-kind=Pod", "--bound-object-name=intruder", f"--bound-object-uid={uid}").stdout.strip()
    assert post(endpoint, report, bound) == 403

    # the stage pod's own token passes the review, but only for the counters its stage declares
    pod_name = wait_for(lambda: next(iter(json.loads(kubectl(
        "get", "pods", "-n", namespace, "-l", "selfguide.dev/job=guarded,selfguide.dev/stage=generate", "-o", "json",
    ).stdout)["items"]), None), "the generate stage's pod", timeout=60)["metadata"]["name"]
    token_file = cluster.kubelet.pod_dir(namespace, pod_name) / "volumes" / "progress-token" / "token"
    token = wait_for(lambda: token_file.is_file() and token_file.read_text(), "the pod's progress token", timeout=30)
    assert post(endpoint, {"percent": 1.0, "stepsTotal": 9}, token) == 422  # train's counter, not generate's
    assert post(endpoint, {"percent": 1.0, "roundsTotal": 20}, token) == 204

    # the stage pod's own token: its audience keeps it out of the API server
    pod = json.loads(kubectl("get", "pods", "-n", namespace, "-l", "selfguide.dev/stage=generate",
                             "-o", "json").stdout)["items"][0]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "progress-token")
    assert volume["projected"]["sources"] == [{"serviceAccountToken": {
        "audience": PROGRESS_AUDIENCE, "expirationSeconds": 3600, "path": "token"}}]
    assert pod["spec"]["automountServiceAccountToken"] is False
    as_pod = kubectl("get", "pods", "-n", namespace, f"--token={unbound}", "--kubeconfig=/dev/null",
                     f"--server={api_server(kubectl)}", "--insecure-skip-tls-verify", check=False)
    assert as_pod.returncode != 0 and "Unauthorized" in as_pod.stderr

    # the stage pods' service account has no access to SelfGuideJobs, pods or Secrets
    account = f"system:serviceaccount:{namespace}:{pod['spec'].get('serviceAccountName', 'default')}"
    for verb, resource in (("get", "selfguidejobs"), ("list", "selfguidejobs"), ("patch", "selfguidejobs"),
                           ("patch", "selfguidejobs/status"), ("get", "pods"), ("list", "pods"),
                           ("create", "pods"), ("get", "secrets"), ("list", "secrets")):
        answer = kubectl("auth", "can-i", verb, resource, "-n", namespace, f"--as={account}", check=False)
        assert answer.stdout.strip() == "no", f"{account} may {verb} {resource}"
    assert sgjs.wait_phase("guarded", "Succeeded", "Failed", timeout=120)["phase"] == "Succeeded"
    assert all(s["progress"]["percent"] == 100 for s in sgjs.status("guarded")["stages"])
    assert not [s for s in sgjs.status("guarded")["stages"] if s["progress"].get("percent") == 99.0]


def api_server(kubectl: Kubectl) -> str:
    return kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}").stdout.strip()


def test_progress_survives_an_operator_restart_and_an_unreachable_operator_never_slows_a_stage(
        start_operator, sgjs: SelfGuideJobs, output_claim: Path, namespace: str):
    port = free_port()
    env = {"SELFGUIDE_PROGRESS_PORT": str(port), "SELFGUIDE_PROGRESS_URL": f"http://127.0.0.1:{port}",
           "SELFGUIDE_PROGRESS_SECONDS": "1"}
    first = start_operator(namespace, **env)
    sgjs.create(manifest("restarted", evaluation=None,
                         pod={"env": stage_env(FAKE_STAGE_SECONDS="16", FAKE_STAGE_STEPS="16")}))

    def generate_percent() -> float:
        stage = next((s for s in sgjs.status("restarted").get("stages") or [] if s["name"] == "generate"), None)
        return ((stage or {}).get("progress") or {}).get("percent", 0.0)

    before = wait_for(lambda: (p := generate_percent()) > 0 and p, "a first progress report", timeout=60)
    first.stop()
    time.sleep(5)  # the stage keeps going while nobody listens; its reports are dropped
    start_operator(namespace, **env)
    after = wait_for(lambda: (p := generate_percent()) > before + 20 and p, "progress after the restart", timeout=60)
    assert after > before
    status = sgjs.wait_phase("restarted", "Succeeded", "Failed", timeout=120)
    generate = next(s for s in status["stages"] if s["name"] == "generate")
    took = (datetime.fromisoformat(generate["completionTime"]) - datetime.fromisoformat(generate["startTime"]))
    assert took.total_seconds() < 16 + 8, f"the stage took {took} with the operator away"
