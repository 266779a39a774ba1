"""Fixtures for operator tests: the CRD installed on the test control plane, and the operator as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from selfguide.crd import CRD_FILE
from selfguide.spec import GROUP, PLURAL
from tests.harness.controlplane import ControlPlane, free_port, tail
from tests.harness.fixtures import Kubectl
from tests.harness.waiting import crd_established, wait_for
from tests.operator.helpers import FAKE_STAGE, OUTPUT_CLAIM, ROOT, VENV_BIN, SelfGuideJobs

_installed: set[str] = set()


@pytest.fixture
def selfguide_crd(active_plane: ControlPlane, kubectl: Kubectl) -> None:
    """The SelfGuideJob CRD from crds/, installed once per control plane and Established."""
    if active_plane.url in _installed:
        return
    kubectl("apply", "--server-side", "-f", str(ROOT / CRD_FILE))
    wait_for(lambda: crd_established(kubectl, f"{PLURAL}.{GROUP}"), "the CRD to be established", timeout=30)
    _installed.add(active_plane.url)


@dataclass
class OperatorProcess:
    """A running `selfguide-operator`."""

    popen: subprocess.Popen[bytes]
    log: Path
    metrics_url: str
    health_url: str

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            self.popen.wait(15)

    def logs(self) -> str:
        return tail(self.log, 60)


@pytest.fixture
def start_operator(kubeconfig: Path, tmp_path: Path) -> Iterator[Callable[..., OperatorProcess]]:
    """``start_operator(namespace, fake_stages=True, **env) -> OperatorProcess``, stopped after the test.

    With `fake_stages`, stage pods run tests/operator/fake_stage.py (a test double of the ML work) instead of
    `selfguide stage`. The resync interval is 1 s so TTL and deadline tests do not wait 30 s."""
    started: list[OperatorProcess] = []

    def start(namespace: str, fake_stages: bool = True, **env: str) -> OperatorProcess:
        metrics, health = free_port(), free_port()
        environment = {**os.environ, "KUBECONFIG": str(kubeconfig), "SELFGUIDE_RESYNC_SECONDS": "1",
                       "SELFGUIDE_OUTPUT_CLAIM": OUTPUT_CLAIM, **env}
        if fake_stages:
            environment["SELFGUIDE_STAGE_COMMAND"] = f"{sys.executable} {FAKE_STAGE}"
        log = tmp_path / f"operator-{len(started)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [str(VENV_BIN / "selfguide-operator"), "--namespace", namespace, "--metrics-port", str(metrics),
                 "--liveness", f"http://127.0.0.1:{health}/healthz"],
                env=environment, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        operator = OperatorProcess(popen, log, f"http://127.0.0.1:{metrics}/metrics",
                                   f"http://127.0.0.1:{health}/healthz")
        started.append(operator)
        wait_for(lambda: _answers(operator), "the operator's health endpoint", timeout=30)
        return operator

    yield start
    for operator in started:
        operator.stop()
        print(f"--- {operator.log} ---\n{operator.logs()}")


def _answers(operator: OperatorProcess) -> bool:
    assert operator.popen.poll() is None, f"the operator exited:\n{operator.logs()}"
    try:
        with urllib.request.urlopen(operator.health_url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def output_claim(namespace: str, make_pvc: Callable[..., Path]) -> Path:
    """The operator's default output claim in the test namespace; returns its local directory."""
    return make_pvc(namespace, OUTPUT_CLAIM)


@pytest.fixture
def sgjs(api_client: ApiClient, namespace: str, selfguide_crd: None) -> SelfGuideJobs:
    return SelfGuideJobs(api_client, namespace)
