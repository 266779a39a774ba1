"""The chart's security promises on the real control plane (docs/security.md): the operator's own token cannot
forge what the admission policy denies, job authors get only what the policy allows, stage pods carry no
token, and a secret a failing stage prints reaches neither status nor Events."""

from __future__ import annotations

import copy
import json
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import CoreV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.config import new_client_from_config

from selfguide_operator.builders import spec_config_map, stage_job
from selfguide_operator.observed import Observed
from selfguide_operator.settings import OperatorSettings
from tests.chart.conftest import Helm, Install, operator_env, write_operator_kubeconfig
from tests.harness.fixtures import Cluster, Kubectl
from tests.harness.waiting import wait_for
from tests.operator.helpers import manifest, stage_env

pytestmark = pytest.mark.e2e

PRIVILEGED_HOST_ROOT = {
    "securityContext": {"privileged": True, "runAsUser": 0, "runAsNonRoot": False,
                        "allowPrivilegeEscalation": True, "capabilities": {"add": ["SYS_ADMIN"]}},
    "podSecurityContext": {"runAsUser": 0, "runAsNonRoot": False},
    "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
    "volumeMounts": [{"name": "host", "mountPath": "/host"}],
}


def legit(install: Install, name: str = "forged", **spec: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stage Job and spec ConfigMap the operator itself would write for a SelfGuideJob `name`."""
    body = manifest(name, **spec)
    body["metadata"] |= {"namespace": install.jobs, "uid": "00000000-0000-0000-0000-000000000001",
                         "generation": 1}
    job = Observed.from_body(body)
    settings = OperatorSettings.from_env(operator_env(install.docs))
    return (stage_job(job, "generate", settings, suspend=True, deadline_seconds=None), spec_config_map(job))


def forge(job: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    forged = copy.deepcopy(job)
    change(forged)
    return forged


def pod(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]


def container(job: dict[str, Any]) -> dict[str, Any]:
    return pod(job)["containers"][0]


FORGED_JOBS: dict[str, Callable[[dict[str, Any]], object]] = {
    "no owner": lambda j: j["metadata"].pop("ownerReferences"),
    "no job label": lambda j: j["metadata"]["labels"].pop("selfguide.dev/job"),
    "another image": lambda j: container(j).update(image="busybox:latest"),
    "another command": lambda j: container(j).update(command=["sh", "-c", "cat /etc/hostname"]),
    "extra args": lambda j: container(j).update(args=["--force"]),
    "any service account": lambda j: pod(j).update(serviceAccountName="default", automountServiceAccountToken=True),
    "a token without a service account": lambda j: pod(j).update(automountServiceAccountToken=True),
    "the host's root": lambda j: (pod(j)["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
                                  container(j)["volumeMounts"].append({"name": "host", "mountPath": "/host"})),
    "privileged": lambda j: container(j)["securityContext"].update(privileged=True, allowPrivilegeEscalation=True),
    "SYS_ADMIN": lambda j: container(j)["securityContext"].update(capabilities={"add": ["SYS_ADMIN"]}),
    "a Secret volume": lambda j: pod(j)["volumes"].append({"name": "s", "secret": {"secretName": "any"}}),
    "a projected Secret": lambda j: pod(j)["volumes"].append(
        {"name": "s", "projected": {"sources": [{"secret": {"name": "any"}}]}}),
    "a projected API token": lambda j: pod(j)["volumes"].append(
        {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}),
    "a token for another audience": lambda j: pod(j)["volumes"].append(
        {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "audience": "vault"}}]}}),
    "a Secret variable": lambda j: container(j)["env"].append(
        {"name": "LEAK", "valueFrom": {"secretKeyRef": {"name": "any", "key": "k"}}}),
    "envFrom a Secret": lambda j: container(j).update(envFrom=[{"secretRef": {"name": "any"}}]),
    "the host network": lambda j: pod(j).update(hostNetwork=True),
    "a node name": lambda j: pod(j).update(nodeName="node-1"),
    "an init container": lambda j: pod(j).update(initContainers=[dict(container(j), name="init")]),
    # issue 30: a stage-shaped Job (stage image and command, no token) that would run foreign code or reach a
    # Secret, a root identity or storage no SelfGuideJob was given
    "PYTHONPATH to the spec ConfigMap": lambda j: set_env(j, "PYTHONPATH", "/etc/selfguide"),
    "HF_TOKEN from a Secret not allowed": lambda j: set_env(
        j, "HF_TOKEN", value_from={"secretKeyRef": {"name": "any", "key": "k"}}, then=("SELFGUIDE_SECRET_ENV", "HF_TOKEN")),
    "an allowed Secret's variable left unredacted": lambda j: set_env(
        j, "HF_TOKEN", value_from={"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}}),
    "a copy of the model token": lambda j: set_env(
        j, "HF_TOKEN", value_from={"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}},
        then=("SELFGUIDE_SECRET_ENV", "HF_TOKEN"), copy="$(HF_TOKEN)"),
    "LD_PRELOAD": lambda j: set_env(j, "LD_PRELOAD", "/data/x.so"),
    "HF_ENDPOINT": lambda j: set_env(j, "HF_ENDPOINT", "https://collector.example"),
    "the operator's own variable replaced": lambda j: set_env(j, "SELFGUIDE_TERMINATION_LOG", "/dev/null"),
    "runAsUser 0": lambda j: pod(j)["securityContext"].update(runAsUser=0),
    "runAsNonRoot false": lambda j: pod(j)["securityContext"].update(runAsNonRoot=False),
    "a container as root": lambda j: container(j)["securityContext"].update(runAsUser=0, runAsNonRoot=False),
    "runAsGroup 0": lambda j: pod(j)["securityContext"].update(runAsGroup=0),
    "fsGroup 0": lambda j: pod(j)["securityContext"].update(fsGroup=0),
    "supplementalGroups 0": lambda j: pod(j)["securityContext"].update(supplementalGroups=[0]),
    "a container in group 0": lambda j: container(j)["securityContext"].update(runAsGroup=0),
    "a writable root filesystem": lambda j: container(j)["securityContext"].update(readOnlyRootFilesystem=False),
    "an nfs volume": lambda j: pod(j)["volumes"].append({"name": "n", "nfs": {"server": "10.0.0.1", "path": "/"}}),
    "any claim": lambda j: pod(j)["volumes"].append({"name": "c", "persistentVolumeClaim": {"claimName": "other"}}),
    "the output volume on another claim": lambda j: volume(j, "data").update(
        persistentVolumeClaim={"claimName": "other"}),
    "an ephemeral clone of a claim": lambda j: pod(j)["volumes"].append({"name": "e", "ephemeral": {
        "volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                                         "dataSource": {"kind": "PersistentVolumeClaim", "name": "other"}}}}}),
    "another ConfigMap": lambda j: pod(j)["volumes"].append({"name": "m", "configMap": {"name": "app-config"}}),
    "envFrom a ConfigMap": lambda j: container(j).update(envFrom=[{"configMapRef": {"name": "app-config"}}]),
}


def set_env(job: dict[str, Any], name: str, value: str | None = None, value_from: dict[str, Any] | None = None,
            then: tuple[str, str] | None = None, copy: str | None = None) -> None:
    """Put the variable first (the operator's own come after it, so only the policy can refuse it), then the
    variable `then`, then a variable COPY with the value `copy`."""
    var: dict[str, Any] = {"name": name} | ({"value": value} if value is not None else {"valueFrom": value_from})
    added = [var] + ([{"name": then[0], "value": then[1]}] if then else []) + (
        [{"name": "COPY", "value": copy}] if copy else [])
    container(job)["env"][:0] = added


def volume(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in pod(job)["volumes"] if v["name"] == name)


def create(install: Install, kubectl: Kubectl, body: dict[str, Any]) -> tuple[bool, str]:
    """`kubectl create --dry-run=server` of `body` with the operator's token: (accepted, stderr)."""
    result = kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(body), check=False,
                     kubeconfig=install.operator_kubeconfig)
    return result.returncode == 0, result.stderr


def as_operator(install: Install, call: Callable[[CoreV1Api], object]) -> tuple[bool, str]:
    """A call through the API client with the operator's token (kubectl patch and delete would `get` first,
    which the operator may not): (accepted, error)."""
    with new_client_from_config(config_file=str(install.operator_kubeconfig)) as client:
        try:
            call(CoreV1Api(client))
        except ApiException as error:
            return False, f"{error.status}: {error.body}"
    return True, ""


def denied_by_policy(accepted_and_error: tuple[bool, str]) -> bool:
    accepted, error = accepted_and_error
    return not accepted and "ValidatingAdmissionPolicy" in error and "denied request" in error


ALLOWED_SECRET = {"policy": {"allowedSecrets": ["hf"]}}
"""An administrator's allow-list naming the Secret `hf` (so that a denied Secret is denied for its name)."""


@pytest.mark.parametrize("install", ["namespaced", "cluster-wide"], indirect=True)
@pytest.mark.parametrize("chart_values", [ALLOWED_SECRET])
def test_forged_requests_with_the_operators_token_are_denied(install: Install, kubectl: Kubectl, kubeconfig: Path):
    write_operator_kubeconfig(install, kubectl, kubeconfig)
    job, config_map = legit(install)
    # What the operator really writes is accepted (the denials below are the forgery's doing), with an allowed
    # model token too.
    assert create(install, kubectl, job) == (True, "")
    assert create(install, kubectl, config_map) == (True, "")
    with_token, _ = legit(install, model={"name": "org/gated-model", "hfTokenSecret": {"name": "hf"}})
    assert create(install, kubectl, with_token) == (True, "")
    # The API server loads a new admission policy asynchronously: wait until it is in force.
    probe = forge(job, FORGED_JOBS["another image"])
    wait_for(lambda: denied_by_policy(create(install, kubectl, probe)), "the admission policy to be in force",
             timeout=30)
    for what, change in FORGED_JOBS.items():
        assert denied_by_policy(create(install, kubectl, forge(job, change))), what
    for what, forged in {
        "a sitecustomize.py beside job.yaml": forge(config_map, lambda c: c["data"].update(
            {"sitecustomize.py": "import os; open('/dev/termination-log', 'w').write(os.environ['HF_TOKEN'])"})),
        "binaryData": forge(config_map, lambda c: c.update(binaryData={"x.so": "AA=="})),
        "no job.yaml": forge(config_map, lambda c: c.update(data={"sitecustomize.py": "import os"})),
        "another name": forge(config_map, lambda c: c["metadata"].update(name="app-config")),
        "no owner": forge(config_map, lambda c: c["metadata"].pop("ownerReferences")),
        "no job label": forge(config_map, lambda c: c["metadata"]["labels"].pop("selfguide.dev/job")),
    }.items():
        assert denied_by_policy(create(install, kubectl, forged)), what
    # ConfigMaps that are not a job's: neither patched (even into the right shape) nor deleted.
    kubectl("create", "configmap", "app-spec", "-n", install.jobs, "--from-literal=a=b")
    patch = json.dumps({"metadata": {"labels": {"selfguide.dev/job": "app"},
                                     "ownerReferences": config_map["metadata"]["ownerReferences"]}})
    assert denied_by_policy(as_operator(install, lambda api: api.patch_namespaced_config_map(
        "app-spec", install.jobs, json.loads(patch))))
    assert denied_by_policy(as_operator(install, lambda api: api.delete_namespaced_config_map(
        "app-spec", install.jobs)))
    if install.namespaced:
        return
    # Cluster-wide, RBAC lets the operator write everywhere; the policy keeps it out of kube-system.
    system_job = forge(job, lambda j: j["metadata"].update(namespace="kube-system"))
    assert denied_by_policy(create(install, kubectl, system_job))
    assert kubectl("get", "configmap", "extension-apiserver-authentication", "-n", "kube-system").returncode == 0
    assert denied_by_policy(as_operator(install, lambda api: api.patch_namespaced_config_map(
        "extension-apiserver-authentication", "kube-system", {"data": {"forged": "yes"}})))


@pytest.mark.parametrize("install", ["namespaced"], indirect=True)
def test_a_namespace_editor_cannot_plant_a_stage_job_for_the_operator_to_adopt(install: Install, kubectl: Kubectl):
    """Issue 30: an `edit` user of the jobs' namespace created `<job>-train` with an owner reference to the
    job, and the operator took it as the train stage and published its forged result. Only the operator may
    now create a Job or ConfigMap owned by a SelfGuideJob, or add such an owner reference."""
    kubectl("create", "rolebinding", "editor", "--clusterrole=edit", "--user=editor", "-n", install.jobs)
    kubectl("apply", "-n", install.jobs, "-f", "-", input=yaml.safe_dump(manifest("victim", suspend=True)))
    uid = sgj(kubectl, install.jobs, "victim")["metadata"]["uid"]
    job, config_map = legit(install, "victim")
    for child in (job, config_map):
        child["metadata"]["ownerReferences"][0]["uid"] = uid
    planted = forge(job, lambda j: j["metadata"].update(name="victim-train"))
    as_editor = ("--as=editor", "-n", install.jobs)

    def editor_create(body: dict[str, Any]) -> tuple[bool, str]:
        result = kubectl("create", "--dry-run=server", *as_editor, "-f", "-", input=json.dumps(body), check=False)
        return result.returncode == 0, result.stderr

    wait_for(lambda: denied_by_policy(editor_create(planted)), "the admission policy to be in force", timeout=30)
    assert denied_by_policy(editor_create(config_map))
    # Not by adding the owner reference afterwards either (a Job it may create, patched into a child).
    unowned = forge(planted, lambda j: j["metadata"].pop("ownerReferences"))
    assert editor_create(unowned) == (True, "")
    kubectl("create", *as_editor, "-f", "-", input=json.dumps(unowned))
    patch = json.dumps({"metadata": {"ownerReferences": job["metadata"]["ownerReferences"]}})
    patched = kubectl("patch", "job", "victim-train", *as_editor, "--type=merge", "-p", patch, check=False)
    assert denied_by_policy((patched.returncode == 0, patched.stderr))


@pytest.mark.parametrize("install", ["namespaced", "cluster-wide"], indirect=True)
def test_the_notes_say_how_to_wait_for_the_policy(install: Install, helm: Helm, kubectl: Kubectl, kubeconfig: Path):
    """Issue 30: a forged Job was admitted in the moment after `helm install` returned. The chart's notes give
    a loop that ends once the operator's identity is refused a Job that is not a stage Job."""
    release = install.jobs.removesuffix("-jobs")
    notes = helm("get", "notes", release, "--namespace", install.namespace, "--kubeconfig", str(kubeconfig)).stdout
    loop = notes[notes.index("until kubectl"):notes.index("done", notes.index("until kubectl")) + 4]
    loop = loop.replace("kubectl ", f"{kubectl.binary} --kubeconfig={kubeconfig} ", 1)
    subprocess.run(["bash", "-c", loop], check=True, timeout=30)
    probe = kubectl("create", "job", "selfguide-probe", "--image=probe", "-n", install.jobs, "--dry-run=server",
                    f"--as={install.user}", check=False)
    assert denied_by_policy((probe.returncode == 0, probe.stderr))


def events(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    return json.loads(kubectl("get", "events", "-n", namespace, "--field-selector",
                              f"involvedObject.name={name}", "-o", "json").stdout)["items"]


def sgj(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return json.loads(kubectl("get", "sgj", name, "-n", namespace, "-o", "json").stdout)


@pytest.mark.parametrize("install", ["cluster-wide"], indirect=True)
def test_a_privileged_host_path_job_is_refused_by_the_default_policy(install: Install, operator_log: Path,
                                                                    kubectl: Kubectl):
    kubectl("apply", "-n", install.jobs, "-f", "-", input=yaml.safe_dump(manifest("root", pod=PRIVILEGED_HOST_ROOT)))
    kubectl("wait", "--for=condition=Failed", "sgj/root", "-n", install.jobs, "--timeout=60s", timeout=70)
    failed = next(c for c in sgj(kubectl, install.jobs, "root")["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "InvalidSpec"
    for field, setting in [("securityContext.privileged", "allowPrivileged"),
                           ("podSecurityContext.runAsUser", "allowPrivileged"),
                           ("securityContext.capabilities.add", "allowedCapabilities"),
                           ("volumes[0].hostPath.path", "allowedHostPaths")]:
        assert f"spec.pod.{field}: " in failed["message"] and f"policy.{setting}" in failed["message"]
    assert not json.loads(kubectl("get", "jobs", "-n", install.jobs, "-o", "json").stdout)["items"]


@pytest.mark.parametrize("install", ["cluster-wide"], indirect=True)
@pytest.mark.parametrize("chart_values", [{"policy": {"allowPrivileged": True, "allowedHostPaths": ["/"],
                                                      "allowedCapabilities": ["SYS_ADMIN"]}}])
def test_what_the_policy_allows_is_rendered_as_asked_and_admitted(install: Install, operator_log: Path,
                                                                  kubectl: Kubectl):
    kubectl("apply", "-n", install.jobs, "-f", "-", input=yaml.safe_dump(manifest("root", pod=PRIVILEGED_HOST_ROOT)))
    kubectl("wait", "--for=condition=Complete", "sgj/root", "-n", install.jobs, "--timeout=120s", timeout=130)
    job = json.loads(kubectl("get", "job", "root-generate", "-n", install.jobs, "-o", "json").stdout)
    security = container(job)["securityContext"]
    assert security["privileged"] is True and security["runAsUser"] == 0
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert pod(job)["securityContext"]["runAsUser"] == 0
    assert {"name": "host", "hostPath": {"path": "/", "type": ""}} in pod(job)["volumes"]
    assert "denied" not in operator_log.read_text()


@pytest.mark.parametrize("install", ["cluster-wide"], indirect=True)
@pytest.mark.parametrize("chart_values", [ALLOWED_SECRET])
def test_stage_pods_carry_no_token_and_a_printed_secret_reaches_neither_status_nor_events(
        install: Install, operator_log: Path, kubectl: Kubectl, cluster: Cluster):
    jobs, token = install.jobs, f"hf_{secrets.token_hex(12)}"
    kubectl("create", "secret", "generic", "hf", "-n", jobs, f"--from-literal=HF_TOKEN={token}")
    model = {"name": "org/gated-model", "hfTokenSecret": {"name": "hf"}}
    for name, kind in (("leak", "leak"), ("crash", "crash")):
        kubectl("apply", "-n", jobs, "-f", "-", input=yaml.safe_dump(manifest(
            name, model=model, pod={"env": stage_env(FAKE_STAGE_FAIL=f"generate:{kind}")},
            stages={"generate": {"backoffLimit": 0}})))
    for name in ("leak", "crash"):
        kubectl("wait", "--for=condition=Failed", f"sgj/{name}", "-n", jobs, "--timeout=120s", timeout=130)
    pods = json.loads(kubectl("get", "pods", "-n", jobs, "-o", "json").stdout)["items"]
    assert len(pods) == 2
    for stage_pod in pods:
        assert stage_pod["spec"]["automountServiceAccountToken"] is False
        projected = [v["projected"]["sources"] for v in stage_pod["spec"]["volumes"] if "projected" in v]
        # only the progress token, whose audience the API server refuses (docs/security.md)
        assert projected in ([], [[{"serviceAccountToken": {"audience": "selfguide.dev/progress",
                                                             "expirationSeconds": 3600, "path": "token"}}]]), projected
    logs = [cluster.kubelet.log_path(jobs, p["metadata"]["name"]).read_text() for p in pods]
    assert all(token in log for log in logs), "the fake stage did not print the secret"
    leak = sgj(kubectl, jobs, "leak")
    assert "the hub refused token [redacted]" in leak["status"]["stages"][0]["message"]
    for name in ("leak", "crash"):
        readable = json.dumps(sgj(kubectl, jobs, name)) + json.dumps(events(kubectl, jobs, name))
        assert token not in readable and "StageFailed" in readable
    assert "denied" not in operator_log.read_text()
