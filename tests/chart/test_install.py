"""charts/selfguide applied to the test cluster, namespaced and cluster-wide; the operator, run as a local
process with a token of the chart's ServiceAccount and the Deployment's arguments and environment, completes a
job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import SELFGUIDEJOBS, Install, can_i
from tests.harness.fixtures import Cluster, Kubectl
from tests.harness.waiting import wait_for
from tests.operator.helpers import OUTPUT_CLAIM, manifest

pytestmark = pytest.mark.e2e


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
