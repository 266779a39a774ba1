"""charts/selfguide applied to the test cluster, namespaced and cluster-wide; the operator, run as a local
process with a token of the chart's ServiceAccount and the Deployment's arguments and environment, completes a
job."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, SELFGUIDEJOBS, Helm, objects, one, operator_container, operator_env
from tests.harness.controlplane import free_port, tail
from tests.harness.fixtures import Cluster, Kubectl
from tests.harness.waiting import wait_for
from tests.operator.helpers import FAKE_STAGE, OUTPUT_CLAIM, VENV_BIN, manifest

pytestmark = pytest.mark.e2e


@dataclass
class Install:
    """The chart applied in `namespace`; test jobs run in namespace `jobs`."""

    namespace: str
    jobs: str
    namespaced: bool
    docs: list[dict]

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
            cluster: Cluster, chart_crds: None, tmp_path: Path) -> Iterator[Install]:
    """`helm install` of the chart (the Deployment pinned to no node: there is no image to run here). A
    namespaced install watches only the jobs' namespace and creates the output claim there; a cluster-wide one
    does not know that namespace, and the test creates the claim."""
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
        "watchNamespaces": [jobs] if namespaced else [],
        "outputClaim": {"create": namespaced, "storageClassName": ""},
        "nodeSelector": {"selfguide.dev/test": "no-such-node"},
    }))
    release_args = (release, "--namespace", namespace, "--kubeconfig", str(kubeconfig))
    notes = helm("install", *release_args, str(CHART), "--values", str(overrides)).stdout
    assert f"in {f'namespaces {jobs}' if namespaced else 'every namespace'}." in notes
    rendered = helm("get", "manifest", *release_args).stdout
    yield Install(namespace, jobs, namespaced, objects(rendered))
    helm("uninstall", *release_args)
    kubectl("delete", "namespace", jobs, "--wait=false")
    cluster.kubelet.delete_pvs(jobs)


@pytest.fixture
def operator_log(install: Install, kubectl: Kubectl, kubeconfig: Path, tmp_path: Path) -> Iterator[Path]:
    """`selfguide-operator` with the Deployment's command, arguments (local ports) and environment,
    authenticated by a TokenRequest token of the chart's ServiceAccount; stage pods run fake_stage.py."""
    token = kubectl("create", "token", install.service_account, "-n", install.namespace).stdout.strip()
    config = yaml.safe_load(kubeconfig.read_text())
    config["users"] = [{"name": "operator", "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = "operator"
    (tmp_path / "operator.kubeconfig").write_text(yaml.safe_dump(config))

    container = operator_container(install.docs)
    health = f"http://127.0.0.1:{free_port()}/healthz"
    args = [arg for arg in container["args"] if not arg.startswith(("--liveness=", "--metrics-port="))]
    env = os.environ | operator_env(install.docs) | {
        "KUBECONFIG": str(tmp_path / "operator.kubeconfig"),
        "SELFGUIDE_STAGE_COMMAND": f"{sys.executable} {FAKE_STAGE}",
    }
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


def test_the_operator_completes_a_job_created_by_an_editor(install: Install, operator_log: Path,
                                                           kubectl: Kubectl, alice_kubeconfig: Path,
                                                           cluster: Cluster):
    jobs = install.jobs
    kubectl("create", "rolebinding", "alice-edits", "--clusterrole=edit", "--user=alice", "-n", jobs)
    wait_for(lambda: can_i(kubectl, "create", SELFGUIDEJOBS, "-n", jobs, kubeconfig=alice_kubeconfig),
             "the edit ClusterRole to aggregate the chart's SelfGuideJob rules")
    kubectl("apply", "-n", jobs, "-f", "-", input=yaml.safe_dump(manifest("chart-demo")),
            kubeconfig=alice_kubeconfig)
    kubectl("wait", "--for=condition=Complete", "sgj/chart-demo", "-n", jobs, "--timeout=120s", timeout=130)

    status = json.loads(kubectl("get", "sgj/chart-demo", "-n", jobs, "-o", "json").stdout)["status"]
    assert status["outputs"]["adapter"] == f"pvc://{OUTPUT_CLAIM}/{jobs}/chart-demo/train/adapter"
    adapter = cluster.kubelet.pvc_dir(jobs, OUTPUT_CLAIM) / jobs / "chart-demo/train/adapter"
    assert (adapter / "adapter_config.json").is_file()
    events = kubectl("get", "events", "-n", jobs, "--field-selector", "involvedObject.name=chart-demo",
                     "-o", "jsonpath={.items[*].reason}").stdout.split()
    assert events.count("StageSucceeded") == 3
    assert "forbidden" not in operator_log.read_text().lower()  # kopf retries and then logs any denied request


OPERATOR_CAN = [
    ("watch", SELFGUIDEJOBS), ("patch", SELFGUIDEJOBS), ("patch", SELFGUIDEJOBS, "--subresource=status"),
    ("update", SELFGUIDEJOBS, "--subresource=finalizers"), ("create", "jobs.batch"), ("delete", "jobs.batch"),
    ("create", "configmaps"), ("patch", "configmaps"), ("list", "pods"), ("create", "events"),
    ("list", "events"),
]
OPERATOR_CANNOT = [
    ("get", "secrets"), ("list", "secrets"), ("watch", "secrets"), ("create", SELFGUIDEJOBS),
    ("delete", SELFGUIDEJOBS), ("update", SELFGUIDEJOBS, "--subresource=status"), ("get", "configmaps"),
    ("create", "pods"), ("create", "pods", "--subresource=exec"), ("get", "pods", "--subresource=log"),
    ("update", "jobs.batch"), ("patch", "events"), ("create", "deployments.apps"),
    ("create", "serviceaccounts"), ("create", "serviceaccounts", "--subresource=token"),
    ("create", "rolebindings.rbac.authorization.k8s.io"), ("create", "persistentvolumeclaims"),
]


def test_the_service_account_may_do_what_the_operator_does_and_nothing_else(install: Install,
                                                                           kubectl: Kubectl):
    def can(*args: str) -> bool:
        return can_i(kubectl, *args, f"--as={install.user}")

    for check in OPERATOR_CAN:
        assert can(*check, "-n", install.jobs), check
    for check in OPERATOR_CANNOT:
        assert not can(*check, "-n", install.jobs), check
    assert not can("get", "secrets", "-n", install.namespace)
    assert not can("delete", "namespaces") and not can("get", "namespaces/default") and not can("*", "*")
    assert not can("list", "secrets", "--all-namespaces") and not can("get", "nodes")
    # Cluster-wide it works everywhere; namespaced, in the jobs' namespace only (but kopf follows namespaces).
    assert can("create", "jobs.batch", "-n", "default") != install.namespaced
    assert can("watch", SELFGUIDEJOBS, "--all-namespaces") != install.namespaced
    assert can("watch", "namespaces") == install.namespaced
    assert can("watch", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can("get", f"customresourcedefinitions.apiextensions.k8s.io/{SELFGUIDEJOBS}")


def test_viewers_read_selfguidejobs_but_cannot_change_them(install: Install, kubectl: Kubectl):
    kubectl("create", "rolebinding", "viewer", "--clusterrole=view", "--user=viewer", "-n", install.jobs)

    def can(verb: str) -> bool:
        return can_i(kubectl, verb, SELFGUIDEJOBS, "-n", install.jobs, "--as=viewer")

    wait_for(lambda: can("list"), "the view ClusterRole to aggregate the chart's SelfGuideJob rules")
    assert can("watch") and not can("create") and not can("delete") and not can("patch")
