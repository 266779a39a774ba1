"""The real `helm` (built by hack/build-tools.sh into KUBEBUILDER_ASSETS) rendering charts/selfguide."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.controlplane import free_port, tail
from tests.harness.fixtures import Cluster, Kubectl, _assets
from tests.harness.waiting import crd_established, wait_for
from tests.operator.helpers import FAKE_STAGE, OUTPUT_CLAIM, ROOT, VENV_BIN

CHART = ROOT / "charts" / "selfguide"
VALUES = Path(__file__).with_name("values")
SELFGUIDEJOBS = "selfguidejobs.selfguide.dev"
"""The resource (for kubectl), and the name of its CRD."""


@dataclass
class Helm:
    binary: Path
    home: Path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``helm ARGS`` with its caches and config under `home`; with `check`, failing raises."""
        homes = {f"HELM_{kind}_HOME": str(self.home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
        result = subprocess.run([str(self.binary), *args], capture_output=True, text=True, check=False,
                                env=os.environ | homes, timeout=60)
        if check and result.returncode:
            raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def template(self, *values: Path, release: str = "selfguide", namespace: str = "selfguide-system") -> str:
        """The chart rendered with these values files (without its CRDs)."""
        return self("template", release, str(CHART), "--namespace", namespace,
                    *(arg for file in values for arg in ("--values", str(file)))).stdout


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(_assets(("helm",)) / "helm", tmp_path_factory.mktemp("helm"))


@pytest.fixture
def chart_crds(kubectl: Kubectl) -> None:
    """The chart's CRDs applied as docs/install.md says to on an upgrade, and Established."""
    kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    wait_for(lambda: crd_established(kubectl, SELFGUIDEJOBS), "the SelfGuideJob CRD to be established", timeout=30)


def objects(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [doc for doc in docs if doc["kind"] == kind]
    return found


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def operator_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The environment the Deployment gives the operator."""
    return {var["name"]: var["value"] for var in operator_container(docs)["env"]}


@dataclass
class Install:
    """The chart applied in `namespace`; test jobs run in namespace `jobs`."""

    namespace: str
    jobs: str
    namespaced: bool
    docs: list[dict]
    operator_kubeconfig: Path
    """Authenticates with a token of the chart's ServiceAccount (written by `operator_log`)."""

    @property
    def service_account(self) -> str:
        return one(self.docs, "ServiceAccount")["metadata"]["name"]

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


def can_i(kubectl: Kubectl, *args: str, kubeconfig: Path | None = None) -> bool:
    answer = kubectl("auth", "can-i", *args, check=False, kubeconfig=kubeconfig).stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)}: {answer!r}"
    return answer == "yes"


@pytest.fixture(params=["namespaced", "cluster-wide"])
def install(request: pytest.FixtureRequest, helm: Helm, kubectl: Kubectl, kubeconfig: Path, namespace: str,
            cluster: Cluster, chart_crds: None, tmp_path: Path, chart_values: dict) -> Iterator[Install]:
    """`helm install` of the chart (the Deployment pinned to no node: there is no image to run here). A
    namespaced install watches only the jobs' namespace and creates the output claim there; a cluster-wide one
    does not know that namespace, and the test creates the claim. Stage pods run tests/operator/fake_stage.py
    (the chart's `stages.command`); `chart_values` adds values."""
    namespaced = request.param == "namespaced"
    release = f"sg-{secrets.token_hex(3)}"
    jobs = f"{release}-jobs"
    kubectl("create", "namespace", jobs)
    wait_for(lambda: kubectl("get", "serviceaccount", "default", "-n", jobs, check=False).returncode == 0,
             f"the default ServiceAccount of {jobs}")
    if namespaced:
        cluster.kubelet.make_pv(jobs, OUTPUT_CLAIM)
    else:
        cluster.kubelet.make_pvc(jobs, OUTPUT_CLAIM)
    overrides = tmp_path / "harness.yaml"
    overrides.write_text(yaml.safe_dump({
        "clusterWide": not namespaced,
        "watchNamespaces": [jobs] if namespaced else [],
        "outputClaim": {"create": namespaced, "storageClassName": ""},
        "nodeSelector": {"selfguide.dev/test": "no-such-node"},
        "stages": {"command": [sys.executable, str(FAKE_STAGE)]},  # what the admission policy allows
        **chart_values,
    }))
    release_args = (release, "--namespace", namespace, "--kubeconfig", str(kubeconfig))
    notes = helm("install", *release_args, str(CHART), "--values", str(overrides)).stdout
    assert f"in {f'namespaces {jobs}' if namespaced else 'every namespace'}." in notes
    rendered = helm("get", "manifest", *release_args).stdout
    yield Install(namespace, jobs, namespaced, objects(rendered), tmp_path / "operator.kubeconfig")
    helm("uninstall", *release_args)
    kubectl("delete", "namespace", jobs, "--wait=false")
    cluster.kubelet.delete_pvs(jobs)


def write_operator_kubeconfig(install: Install, kubectl: Kubectl, kubeconfig: Path) -> Path:
    """A kubeconfig with a TokenRequest token of the chart's ServiceAccount: the operator's own credentials."""
    token = kubectl("create", "token", install.service_account, "-n", install.namespace).stdout.strip()
    config = yaml.safe_load(kubeconfig.read_text())
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "operator"
    install.operator_kubeconfig.write_text(yaml.safe_dump(config))
    return install.operator_kubeconfig


@pytest.fixture
def chart_values() -> dict:
    """Values added to the test install (a test module overrides this fixture)."""
    return {}


@pytest.fixture
def operator_log(install: Install, kubectl: Kubectl, kubeconfig: Path, tmp_path: Path) -> Iterator[Path]:
    """`selfguide-operator` with the Deployment's command, arguments (local ports) and environment,
    authenticated by a TokenRequest token of the chart's ServiceAccount; stage pods run fake_stage.py."""
    write_operator_kubeconfig(install, kubectl, kubeconfig)

    container = operator_container(install.docs)
    health = f"http://127.0.0.1:{free_port()}/healthz"
    args = [arg for arg in container["args"] if not arg.startswith(("--liveness=", "--metrics-port="))]
    env = os.environ | operator_env(install.docs) | {
        "KUBECONFIG": str(install.operator_kubeconfig),
    }
    if "SELFGUIDE_PROGRESS_PORT" in env:  # a local port too, reached by the (local) stage pods
        port = free_port()
        env |= {"SELFGUIDE_PROGRESS_PORT": str(port), "SELFGUIDE_PROGRESS_URL": f"http://127.0.0.1:{port}"}
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        popen = subprocess.Popen([str(VENV_BIN / container["command"][0]), *args, f"--liveness={health}",
                                  f"--metrics-port={free_port()}"],
                                 env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy() -> bool:
        assert popen.poll() is None, f"the operator exited:\n{tail(log)}"
        try:
            with urllib.request.urlopen(health, timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, "the operator's health endpoint", timeout=30)
        yield log
    finally:
        os.killpg(popen.pid, signal.SIGTERM)
        popen.wait(15)
        print(f"--- {log} ---\n{tail(log, 60)}")
