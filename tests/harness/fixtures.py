"""Pytest fixtures for tests against real Kubernetes components.

Tests marked ``integration`` talk to the session's ``control_plane`` (etcd + kube-apiserver only);
tests marked ``e2e`` talk to the session's ``cluster`` (plus controller manager, scheduler and the fake
kubelet). ``kubeconfig``, ``alice_kubeconfig``, ``api_client``, ``kubectl`` and ``namespace`` follow the
test's marker. Without the binaries the tests are skipped, or fail when ``CI=true``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes.client import ApiClient, CoreV1Api, V1Namespace

from tests.harness.controlplane import ALICE, ALL_BINARIES, API_SERVER_BINARIES, ControlPlane
from tests.harness.fake_kubelet import FakeKubelet


@dataclass
class Cluster:
    """A full test cluster: control plane with controllers, and the fake kubelet running its pods."""

    control_plane: ControlPlane
    kubelet: FakeKubelet


@dataclass
class Kubectl:
    """Runs the real kubectl binary against a test control plane."""

    binary: str
    kubeconfig: Path

    def __call__(self, *args: str, input: str | None = None, check: bool = True,
                 kubeconfig: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl ARGS`` (as the admin unless `kubeconfig` says otherwise); with `check`, a non-zero
        exit raises AssertionError carrying stderr."""
        result = subprocess.run([self.binary, f"--kubeconfig={kubeconfig or self.kubeconfig}", *args],
                                input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode:
            raise AssertionError(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result


def _unavailable(reason: str) -> None:
    """Skip the test, or fail it in CI, where the test control plane must be available."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason} (CI=true: the test control plane is required)")
    pytest.skip(reason)


def _assets(binaries: tuple[str, ...]) -> Path:
    """The directory holding `binaries`, from KUBEBUILDER_ASSETS."""
    hint = "run: KUBEBUILDER_ASSETS=$(bash hack/build-tools.sh) .venv/bin/python -m pytest"
    value = os.environ.get("KUBEBUILDER_ASSETS")
    if not value:
        _unavailable(f"KUBEBUILDER_ASSETS is not set; {hint}")
    assets = Path(value)
    if missing := [b for b in binaries if not os.access(assets / b, os.X_OK)]:
        _unavailable(f"KUBEBUILDER_ASSETS={assets} lacks {', '.join(missing)}; {hint}")
    return assets


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver, shared by the session's integration tests."""
    with ControlPlane(_assets(API_SERVER_BINARIES), tmp_path_factory.mktemp("control-plane")) as plane:
        yield plane


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Control plane + controller manager + scheduler + fake kubelet, shared by the session's e2e tests."""
    workdir = tmp_path_factory.mktemp("cluster")
    with (ControlPlane(_assets(ALL_BINARIES), workdir, controllers=True) as plane,
          plane.api_client() as api, FakeKubelet(api, workdir / "kubelet") as kubelet):
        yield Cluster(plane, kubelet)


@pytest.fixture
def active_plane(request: pytest.FixtureRequest) -> ControlPlane:
    """The control plane of this test: the `cluster`'s for e2e tests, else `control_plane`."""
    if request.node.get_closest_marker("e2e"):
        return request.getfixturevalue("cluster").control_plane
    if request.node.get_closest_marker("integration"):
        return request.getfixturevalue("control_plane")
    pytest.fail("a test using the test control plane must be marked integration or e2e")


@pytest.fixture
def kubeconfig(active_plane: ControlPlane) -> Path:
    """The admin (system:masters) kubeconfig file."""
    return active_plane.kubeconfig()


@pytest.fixture
def alice_kubeconfig(active_plane: ControlPlane) -> Path:
    """The kubeconfig of user alice, who may do only what RBAC grants her."""
    return active_plane.kubeconfig(ALICE)


@pytest.fixture
def api_client(active_plane: ControlPlane) -> Iterator[ApiClient]:
    """A Kubernetes API client authenticated as the admin."""
    with active_plane.api_client() as client:
        yield client


@pytest.fixture
def kubectl(kubeconfig: Path) -> Kubectl:
    """Runs the real kubectl as the admin: ``kubectl("get", "pods", "-n", ns)``."""
    binary = shutil.which("kubectl")
    if binary is None:
        _unavailable("kubectl is not on PATH")
    return Kubectl(binary, kubeconfig)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, active_plane: ControlPlane, api_client: ApiClient) -> Iterator[str]:
    """A fresh namespace (with its default ServiceAccount where controllers run), deleted afterwards."""
    core = CoreV1Api(api_client)
    name = f"{re.sub('[^a-z0-9]+', '-', request.node.name.lower())[:40].strip('-')}-{secrets.token_hex(3)}"
    core.create_namespace(V1Namespace.from_dict({"metadata": {"name": name}}))
    deadline = time.monotonic() + 30
    while active_plane.controllers and not core.list_namespaced_service_account(
            name, field_selector="metadata.name=default").items:
        assert time.monotonic() < deadline, f"no default ServiceAccount in namespace {name} after 30s"
        time.sleep(0.05)
    yield name
    core.delete_namespace(name)
    if active_plane.controllers:
        request.getfixturevalue("cluster").kubelet.delete_pvs(name)


@pytest.fixture
def make_pvc(cluster: Cluster) -> Callable[..., Path]:
    """``make_pvc(namespace, name, size="1Gi") -> Path``: a bound PVC and the local directory pods see
    at its mount paths (e2e tests only)."""
    return cluster.kubelet.make_pvc
