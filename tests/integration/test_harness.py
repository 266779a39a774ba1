"""Self-tests of the Kubernetes test harness: API server, RBAC, controllers, scheduler and fake kubelet."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes.client import (
    ApiClient,
    BatchV1Api,
    CoreV1Api,
    CustomObjectsApi,
    V1ConfigMap,
    V1Job,
    V1Pod,
    V1Secret,
    VersionApi,
)
from kubernetes.client.rest import ApiException

from tests.harness.controlplane import ALICE, ControlPlane
from tests.harness.fake_kubelet import GPU
from tests.harness.fixtures import Cluster, Kubectl
from tests.harness.waiting import crd_established, wait_for

T = TypeVar("T")
GROUP = "harness.selfguide.dev"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                "type": "object",
                "properties": {"size": {"type": "integer"}, "color": {"type": "string"}},
            }}}},
        }],
    },
}


def pod_spec(command: list[str], **container: Any) -> dict[str, Any]:
    """A restartPolicy Never pod spec whose one container runs `command`."""
    return {"restartPolicy": "Never", "containers": [{"name": "main", "image": "python", "command": command,
                                                      **container}]}


def job_condition(api: ApiClient, namespace: str, name: str) -> Any:
    """The Job's terminal condition (Complete or Failed), or None while it runs."""
    status = BatchV1Api(api).read_namespaced_job_status(name, namespace).status
    return next((c for c in status.conditions or [] if c.type in ("Complete", "Failed") and c.status == "True"),
                None)


def pinned_kubernetes_version() -> str:
    go_mod = (Path(__file__).resolve().parents[2] / "hack/tools/kubernetes/go.mod").read_text()
    return re.search(r"^require k8s\.io/kubernetes (v\S+)", go_mod, re.MULTILINE).group(1)


@pytest.mark.integration
def test_version_is_the_pinned_release(api_client: ApiClient, kubectl: Kubectl) -> None:
    version = pinned_kubernetes_version()
    assert VersionApi(api_client).get_code().git_version == version
    assert json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"] == version


@pytest.mark.integration
def test_custom_resource_round_trip(kubectl: Kubectl, api_client: ApiClient, namespace: str) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(CRD))
    wait_for(lambda: crd_established(kubectl, f"widgets.{GROUP}"), "the CRD to be established", timeout=30)
    custom = CustomObjectsApi(api_client)

    def get(name: str) -> dict[str, Any]:
        return custom.get_namespaced_custom_object(GROUP, "v1", namespace, "widgets", name)["spec"]

    widget = {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": "w1"},
              "spec": {"size": 1, "color": "red"}}
    kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(widget))
    assert get("w1") == {"size": 1, "color": "red"}
    custom.patch_namespaced_custom_object(GROUP, "v1", namespace, "widgets", "w1", {"spec": {"size": 2}},
                                          _content_type="application/merge-patch+json")
    kubectl("patch", "widget", "w1", "-n", namespace, "--type=merge", "-p", '{"spec": {"color": "blue"}}')
    assert get("w1") == {"size": 2, "color": "blue"}

    custom.create_namespaced_custom_object(GROUP, "v1", namespace, "widgets",
                                           {**widget, "metadata": {"name": "w2"}})
    listed = json.loads(kubectl("get", "widgets", "-n", namespace, "-o", "json").stdout)["items"]
    assert {(w["metadata"]["name"], w["spec"]["size"]) for w in listed} == {("w1", 2), ("w2", 1)}


@pytest.mark.integration
def test_alice_gets_only_what_rbac_grants(kubectl: Kubectl, alice_kubeconfig: Path, active_plane: ControlPlane,
                                          namespace: str) -> None:
    def can_i(verb: str) -> str:
        return kubectl("auth", "can-i", verb, "configmaps", "-n", namespace, check=False,
                       kubeconfig=alice_kubeconfig).stdout.strip()

    def create(name: str) -> None:
        with active_plane.api_client(ALICE) as alice:
            CoreV1Api(alice).create_namespaced_config_map(namespace, V1ConfigMap.from_dict({"metadata": {"name": name}}))

    assert can_i("create") == "no"
    denied = kubectl("create", "configmap", "c1", "-n", namespace, check=False, kubeconfig=alice_kubeconfig)
    assert denied.returncode != 0 and "forbidden" in denied.stderr, denied.stderr
    with pytest.raises(ApiException) as refused:
        create("c1")
    assert refused.value.status == 403

    kubectl("create", "role", "configmap-writer", "--verb=create,get", "--resource=configmaps", "-n", namespace)
    kubectl("create", "rolebinding", "alice-writes", "--role=configmap-writer", "--user=alice", "-n", namespace)
    wait_for(lambda: can_i("create") == "yes", "RBAC to grant alice configmaps", timeout=10)
    kubectl("create", "configmap", "c1", "-n", namespace, kubeconfig=alice_kubeconfig)
    create("c2")
    assert can_i("delete") == "no"


@pytest.mark.e2e
def test_gpu_job_writes_to_its_volume(api_client: ApiClient, namespace: str, make_pvc: Callable[..., Path]) -> None:
    data = make_pvc(namespace, "data")
    CoreV1Api(api_client).create_namespaced_config_map(namespace, V1ConfigMap.from_dict(
        {"metadata": {"name": "settings"}, "data": {"greeting": "hello", "target": "world"}}))
    script = (
        "import os, pathlib\n"
        "greeting = pathlib.Path('/etc/selfguide/greeting').read_text()\n"
        "out = pathlib.Path(os.environ['OUT'])\n"
        "out.mkdir()\n"
        "(out / 'result.txt').write_text(f\"{greeting} {os.environ['TARGET']} from {os.environ['POD_NAMESPACE']}\")\n"
        "pathlib.Path('/dev/termination-log').write_text('done')\n"
    )
    container = {
        "resources": {"limits": {GPU: "1"}},
        "env": [
            {"name": "OUT", "value": "/data/out"},
            {"name": "TARGET", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "target"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ],
        "volumeMounts": [{"name": "data", "mountPath": "/data"},
                         {"name": "config", "mountPath": "/etc/selfguide", "readOnly": True}],
    }
    spec = pod_spec([sys.executable, "-c", script], **container) | {"volumes": [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "config", "configMap": {"name": "settings"}},
    ]}
    BatchV1Api(api_client).create_namespaced_job(namespace, V1Job.from_dict(
        {"metadata": {"name": "gpu"}, "spec": {"backoffLimit": 0, "template": {"spec": spec}}}))

    condition = wait_for(lambda: job_condition(api_client, namespace, "gpu"), "job gpu to finish")
    assert condition.type == "Complete", condition
    assert (data / "out" / "result.txt").read_text() == f"hello world from {namespace}"
    (pod,) = CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector="job-name=gpu").items
    assert pod.spec.node_name.startswith("fake-gpu-node-")
    assert pod.status.container_statuses[0].state.terminated.message == "done"


@pytest.mark.e2e
def test_pod_gets_its_environment_and_files(cluster: Cluster, api_client: ApiClient, namespace: str) -> None:
    core = CoreV1Api(api_client)
    core.create_namespaced_secret(namespace, V1Secret.from_dict(
        {"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}))
    script = (
        "import json, os, pathlib, sys\n"
        "report = pathlib.Path(sys.argv[1])\n"
        "report.parent.mkdir()\n"
        "report.write_text(json.dumps({'cwd': os.getcwd(), 'token': os.environ['TOKEN'], 'pod': os.environ['POD'],\n"
        "    'mode': os.environ['CFG_mode'], 'fake': os.environ['FAKE_KUBELET'],\n"
        "    'settings': pathlib.Path('/etc/app/settings.yaml').read_text(),\n"
        "    'secret': pathlib.Path('/secrets/token').read_text()}))\n"
    )
    spec = pod_spec(
        [sys.executable, "-c", script, "$(OUT)/report.json"],
        workingDir="/work",
        env=[{"name": "OUT", "value": "/work/out"},
             {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
             {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        envFrom=[{"prefix": "CFG_", "configMapRef": {"name": "late"}}],
        volumeMounts=[{"name": "work", "mountPath": "/work"},
                      {"name": "config", "mountPath": "/etc/app/settings.yaml", "subPath": "settings.yaml"},
                      {"name": "creds", "mountPath": "/secrets"}],
    ) | {"volumes": [{"name": "work", "emptyDir": {}},
                     {"name": "config", "configMap": {"name": "late"}},
                     {"name": "creds", "secret": {"secretName": "creds"}}]}
    core.create_namespaced_pod(namespace, V1Pod.from_dict({"metadata": {"name": "env"}, "spec": spec}))

    def waiting_reason() -> str | None:
        statuses = core.read_namespaced_pod_status("env", namespace).status.container_statuses or []
        return next((s.state.waiting.reason for s in statuses if s.state.waiting), None)

    assert wait_for(waiting_reason, "the kubelet to miss ConfigMap late", 30) == "CreateContainerConfigError"
    core.create_namespaced_config_map(namespace, V1ConfigMap.from_dict(
        {"metadata": {"name": "late"}, "data": {"mode": "fast", "settings.yaml": "a: 1"}}))
    wait_for(lambda: core.read_namespaced_pod("env", namespace).status.phase == "Succeeded", "pod env to succeed", 30)

    work = cluster.kubelet.pod_dir(namespace, "env") / "volumes" / "work"
    assert json.loads((work / "out" / "report.json").read_text()) == {
        "cwd": str(work), "token": "s3cret", "pod": "env", "mode": "fast", "fake": "1", "settings": "a: 1",
        "secret": "s3cret",
    }


@pytest.mark.e2e
def test_failing_job_exceeds_its_backoff_limit(api_client: ApiClient, namespace: str) -> None:
    script = "import sys; print('something broke', flush=True); sys.exit(3)"
    spec = pod_spec([sys.executable, "-c", script], terminationMessagePolicy="FallbackToLogsOnError")
    BatchV1Api(api_client).create_namespaced_job(namespace, V1Job.from_dict(
        {"metadata": {"name": "broken"}, "spec": {"backoffLimit": 1, "template": {"spec": spec}}}))

    condition = wait_for(lambda: job_condition(api_client, namespace, "broken"), "job broken to fail", 90)
    assert (condition.type, condition.reason) == ("Failed", "BackoffLimitExceeded")
    pods = CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector="job-name=broken").items
    assert len(pods) == 2
    for pod in pods:
        terminated = pod.status.container_statuses[0].state.terminated
        assert (pod.status.phase, terminated.exit_code, terminated.reason) == ("Failed", 3, "Error")
        assert "something broke" in terminated.message


@pytest.mark.e2e
def test_pod_asking_for_more_gpus_than_a_node_has_stays_pending(cluster: Cluster, api_client: ApiClient,
                                                                namespace: str) -> None:
    gpus = str(cluster.kubelet.gpus_per_node + 1)
    core = CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, V1Pod.from_dict({"metadata": {"name": "greedy"}, "spec": pod_spec(
        [sys.executable, "-c", "pass"], resources={"limits": {GPU: gpus}})}))

    def unschedulable() -> Any:
        conditions = core.read_namespaced_pod_status("greedy", namespace).status.conditions or []
        return next((c for c in conditions if c.type == "PodScheduled" and c.status == "False"), None)

    condition = wait_for(unschedulable, "the scheduler to give up on pod greedy", 30)
    assert condition.reason == "Unschedulable"
    assert f"Insufficient {GPU}" in condition.message
    pod = core.read_namespaced_pod("greedy", namespace)
    assert (pod.status.phase, pod.spec.node_name) == ("Pending", None)


@pytest.mark.e2e
def test_missing_executable_fails_the_pod(api_client: ApiClient, namespace: str) -> None:
    core = CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, V1Pod.from_dict(
        {"metadata": {"name": "typo"}, "spec": pod_spec(["no-such-executable", "--help"])}))

    pod = wait_for(lambda: (p := core.read_namespaced_pod("typo", namespace)).status.phase == "Failed" and p,
                   "pod typo to fail", 30)
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (128, "StartError")
    assert terminated.message == 'exec: "no-such-executable": executable file not found in $PATH'


@pytest.mark.e2e
def test_deleting_a_running_pod_kills_its_process(cluster: Cluster, api_client: ApiClient, namespace: str) -> None:
    core = CoreV1Api(api_client)
    script = "import os, time; open('/scratch/pid', 'w').write(str(os.getpid())); time.sleep(600)"
    core.create_namespaced_pod(namespace, V1Pod.from_dict({"metadata": {"name": "sleeper"}, "spec": pod_spec(
        [sys.executable, "-c", script], volumeMounts=[{"name": "scratch", "mountPath": "/scratch"}],
    ) | {"volumes": [{"name": "scratch", "emptyDir": {}}]}}))
    pid_file = cluster.kubelet.pod_dir(namespace, "sleeper") / "volumes" / "scratch" / "pid"
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the sleeper to start", 30))
    assert core.read_namespaced_pod("sleeper", namespace).status.phase == "Running"

    core.delete_namespaced_pod("sleeper", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("sleeper", namespace)
        except ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, "pod sleeper to be deleted", 30)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
