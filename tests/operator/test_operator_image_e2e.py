"""The operator image (hack/build-images.sh) on the test cluster: the container runs as the chart runs it (uid 1000
from the image, read-only root filesystem, only /tmp writable, no capabilities), on the host's network so it
reaches the test API server on 127.0.0.1. A SelfGuideJob applied with kubectl goes through its three stages (stage
pods run the test double tests/operator/fake_stage.py under the fake kubelet), their progress reports reach the
operator through the container's port, and that port checks bearer tokens with a TokenReview."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from selfguide.contract.progress import PROGRESS_AUDIENCE, report_path
from tests.harness.controlplane import free_port
from tests.harness.fixtures import Cluster, Kubectl, _unavailable
from tests.harness.waiting import wait_for
from tests.operator.helpers import FAKE_STAGE, OUTPUT_CLAIM, ROOT, SelfGuideJobs, manifest, post, stage_env

pytestmark = pytest.mark.e2e

VERSION = yaml.safe_load((ROOT / "charts/selfguide/Chart.yaml").read_text())["appVersion"]
IMAGE = f"ghcr.io/selfguide/selfguide-operator:{VERSION}"
STORE = Path(os.environ.get("SELFGUIDE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
             / "selfguide") / "containers"
"""Where hack/build-images.sh keeps its image store and the podman configuration that goes with it."""


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_STORAGE_CONF": str(STORE / "storage.conf"),
            "CONTAINERS_CONF": str(STORE / "containers.conf")}


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True, timeout=timeout,
                            check=False)
    if check and result.returncode:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


@pytest.fixture(scope="module")
def operator_image() -> str:
    hint = "run: bash hack/build-images.sh"
    if shutil.which("podman") is None or not (STORE / "storage.conf").is_file():
        _unavailable(f"podman or its image store ({STORE}) is missing; {hint}")
    if podman("image", "exists", IMAGE, check=False).returncode:
        _unavailable(f"the operator image {IMAGE} is not built; {hint}")
    label = podman("image", "inspect", "--format", '{{index .Labels "dev.selfguide.source"}}', IMAGE).stdout.strip()
    if label != source_digest():
        _unavailable(f"the operator image {IMAGE} was built from other sources than this tree; {hint}")
    return IMAGE


def source_digest() -> str:
    """hack/build-images.sh's digest of the image's sources: sha256sum of each file, sorted by path, hashed."""
    tops = [ROOT / name for name in ("pyproject.toml", "README.md", "requirements", "selfguide", "selfguide_operator")]
    files = sorted(str(path.relative_to(ROOT)) for top in tops for path in ([top] if top.is_file() else top.rglob("*"))
                   if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts
                   and path.suffix != ".pyc")
    listing = "".join(f"{hashlib.sha256((ROOT / name).read_bytes()).hexdigest()}  {name}\n" for name in files)
    return hashlib.sha256(listing.encode()).hexdigest()[:16]


class Container:
    def __init__(self, name: str) -> None:
        self.name = name

    def running(self) -> bool:
        state = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False).stdout.strip()
        assert state == "true", f"the operator container is not running:\n{self.logs()}"
        return True

    def logs(self) -> str:
        result = podman("logs", "--tail", "60", self.name, check=False)
        return (result.stdout + result.stderr)[-6000:]


@pytest.fixture
def operator_container(operator_image: str, kubeconfig: Path, namespace: str,
                       selfguide_crd: None) -> Iterator[tuple[Container, int]]:
    """The operator image running against the test cluster, watching `namespace`; yields it and its progress port.
    Stage pods run fake_stage.py (this machine's paths: the fake kubelet runs them here, not in the image)."""
    health, metrics, progress = free_port(), free_port(), free_port()
    container = Container(f"selfguide-operator-{secrets.token_hex(4)}")
    env = {"KUBECONFIG": "/etc/selfguide/kubeconfig", "SELFGUIDE_RESYNC_SECONDS": "1",
           "SELFGUIDE_OUTPUT_CLAIM": OUTPUT_CLAIM, "SELFGUIDE_STAGE_COMMAND": f"{sys.executable} {FAKE_STAGE}",
           "SELFGUIDE_PROGRESS_PORT": str(progress), "SELFGUIDE_PROGRESS_URL": f"http://127.0.0.1:{progress}",
           "SELFGUIDE_PROGRESS_SECONDS": "1"}
    podman("run", "--detach", "--name", container.name, "--network=host",
           "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp",  # the chart's emptyDir at /tmp
           "--cap-drop=ALL", "--security-opt=no-new-privileges",
           "--volume", f"{kubeconfig}:/etc/selfguide/kubeconfig:ro",
           *(f"--env={k}={v}" for k, v in env.items()),
           operator_image, "--namespace", namespace, f"--metrics-port={metrics}",
           f"--liveness=http://0.0.0.0:{health}/healthz")
    try:
        wait_for(lambda: container.running() and answers(f"http://127.0.0.1:{health}/healthz"),
                 "the operator container's health endpoint", timeout=60)
        yield container, progress
    finally:
        print(f"--- podman logs {container.name} ---\n{container.logs()}")
        podman("rm", "--force", "--time=2", container.name, check=False)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def test_the_operator_image_runs_a_job_through_its_stages_and_checks_progress_tokens(
        operator_container: tuple[Container, int], cluster: Cluster, sgjs: SelfGuideJobs, output_claim: Path,
        kubectl: Kubectl, namespace: str, tmp_path: Path):
    container, port = operator_container
    inspected = json.loads(podman("inspect", container.name).stdout)[0]
    assert inspected["Config"]["User"] == "1000:1000" and inspected["HostConfig"]["ReadonlyRootfs"] is True
    assert podman("exec", container.name, "id", "-u").stdout.strip() == "1000"
    assert podman("exec", container.name, "touch", "/home/selfguide/x", check=False).returncode != 0

    document = manifest("imaged", pod={"env": stage_env(FAKE_STAGE_SECONDS="6", FAKE_STAGE_STEPS="6")})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(document))
    kubectl("apply", "-n", namespace, "-f", str(tmp_path / "job.yaml"))

    # The generate stage's pod, once its projected progress token is written: its reports pass the TokenReview.
    pod = wait_for(lambda: next(iter(json.loads(kubectl(
        "get", "pods", "-n", namespace, "-l", "selfguide.dev/job=imaged,selfguide.dev/stage=generate", "-o", "json",
    ).stdout)["items"]), None), "the generate stage's pod", timeout=60)["metadata"]["name"]
    token_file = cluster.kubelet.pod_dir(namespace, pod) / "volumes" / "progress-token" / "token"
    token = wait_for(lambda: token_file.is_file() and token_file.read_text(), "the pod's progress token", timeout=30)
    endpoint = f"http://127.0.0.1:{port}" + report_path(namespace, "imaged", "generate")
    assert post(endpoint, {"percent": 1.0}) == 401  # no token
    api_token = kubectl("create", "token", "default", "-n", namespace).stdout.strip()
    assert post(endpoint, {"percent": 1.0}, api_token) == 401  # the API's audience, not the progress audience
    unbound = kubectl("create", "token", "default", "-n", namespace, f"--audience={PROGRESS_AUDIENCE}").stdout
    assert post(endpoint, {"percent": 1.0}, unbound.strip()) == 401  # bound to no pod
    other = f"http://127.0.0.1:{port}" + report_path(namespace, "imaged", "train")
    assert post(other, {"percent": 1.0}, token) == 403  # the generate pod may not report for train
    assert post(endpoint, {"percent": 1.0}, token) == 204  # reviewed and recorded

    seen: dict[str, set[float]] = {}
    deadline = time.monotonic() + 120
    while (status := sgjs.status("imaged")).get("phase") not in ("Succeeded", "Failed"):
        assert time.monotonic() < deadline and container.running(), status
        for stage in status.get("stages") or []:
            if stage["phase"] == "Running" and (stage.get("progress") or {}).get("percent"):
                seen.setdefault(stage["name"], set()).add(stage["progress"]["percent"])
        time.sleep(0.3)
    assert status["phase"] == "Succeeded", f"{status}\n{container.logs()}"
    assert [(s["name"], s["phase"], s["progress"]["percent"]) for s in status["stages"]] == [
        ("generate", "Succeeded", 100), ("train", "Succeeded", 100), ("evaluate", "Succeeded", 100)]
    for name in ("generate", "train", "evaluate"):  # the stage pods' own reports, through the container's port
        assert len({p for p in seen.get(name, ()) if 1 < p < 100}) >= 2, f"{name}: progress seen {seen}"
    assert (output_claim / namespace / "imaged" / "evaluate" / "report.json").is_file()
    row = kubectl("get", "sgj", "imaged", "-n", namespace, "--no-headers").stdout.split()
    assert row[1] == "Succeeded" and "3/3" in row, row
