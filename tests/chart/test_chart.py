"""charts/selfguide rendered by the real helm: lint, RBAC, the operator's settings, security and schema."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pytest
import yaml

import selfguide
from selfguide.spec.runtime import RESERVED_ENV, Resources
from selfguide_operator.builders import stage_job
from selfguide_operator.observed import Observed
from selfguide_operator.policy import (
    RESTRICTED_ENV,
    RESTRICTED_ENV_PREFIXES,
    SAFE_PYTHON_ENV,
    SECRET_ENV,
)
from selfguide_operator.settings import ENV_PREFIX, OperatorSettings, Policy
from tests.chart.conftest import CHART, VALUES, Helm, objects, one, operator_container, operator_env
from tests.operator.helpers import ROOT, manifest

VALUES_FILES = sorted(VALUES.glob("*.yaml"))
OPERATOR_RULES = {
    ("selfguide.dev", "selfguidejobs"): {"list", "watch", "patch"},
    ("selfguide.dev", "selfguidejobs/status"): {"patch"},
    ("selfguide.dev", "selfguidejobs/finalizers"): {"update"},
    ("batch", "jobs"): {"list", "watch", "create", "patch", "delete"},
    ("", "configmaps"): {"create", "patch", "delete"},
    ("", "pods"): {"list", "get"},
    ("", "events"): {"create", "list"},
}
"""What the operator does (selfguide_operator/kube.py) and what kopf does (watch, patch finalizers and annotations)."""
REVIEW_TOKENS = {("authentication.k8s.io", "tokenreviews"): {"create"}}
"""Progress reports: the stage pod's audience-bound token is checked with a TokenReview (cluster-scoped)."""
OBSERVE_CRDS = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}
OBSERVE_NAMESPACES = {("", "namespaces"): {"list", "watch"}}
"""What kopf reads cluster-wide: CRDs (both installs), namespaces (namespaced installs, to follow theirs)."""


def rules(role: dict) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


def render(helm: Helm, name: str) -> list[dict]:
    return objects(helm.template(VALUES / name))


def values(name: str) -> dict:
    return yaml.safe_load((VALUES / name).read_text()) or {}


def named(docs: list[dict], kind: str, name: str) -> dict:
    return next(doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name)


def test_the_chart_ships_the_generated_crds_unchanged():
    diff = filecmp.dircmp(ROOT / "crds", CHART / "crds")
    assert not (diff.left_only or diff.right_only or diff.diff_files), "run `make chart-crds`"


def test_the_chart_version_is_the_package_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == selfguide.__version__


@pytest.mark.integration
@pytest.mark.parametrize("values_file", VALUES_FILES, ids=lambda path: path.stem)
def test_every_values_file_lints_and_becomes_the_operators_settings(helm: Helm, values_file: Path):
    helm("lint", "--strict", str(CHART), "--values", str(values_file))
    docs = objects(helm.template(values_file))
    expected = values(values_file.name)
    settings = OperatorSettings.from_env(operator_env(docs))
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    stages = defaults["stages"] | expected.get("stages", {})
    image = stages["image"]
    namespaced = expected.get("watchNamespaces") or ["selfguide-system"]  # default: the release namespace
    assert settings.watch_namespaces == ([] if expected.get("clusterWide") else namespaced)
    assert settings.stage_command == stages["command"] and settings.policy == Policy()
    resources = {name: Resources.model_validate(value) for name, value in stages["resources"].items()}
    assert settings.stage_resources == resources
    assert settings.image == f"{image['repository']}:{image['tag'] or selfguide.__version__}"
    assert (settings.backoff_limit, settings.shm_size) == (stages["backoffLimit"], stages["shmSize"])
    for doc in docs:
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "selfguide"
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                               "ValidatingAdmissionPolicyBinding"):
            assert doc["metadata"]["namespace"]


@pytest.mark.integration
def test_every_variable_the_chart_sets_is_an_operator_setting(helm: Helm):
    known = {ENV_PREFIX + field.upper() for field in OperatorSettings.model_fields}
    assert set(operator_env(render(helm, "cluster-wide.yaml"))) <= known


@pytest.mark.integration
def test_a_namespaced_install_has_a_role_per_watched_namespace_and_only_observes_the_cluster(helm: Helm):
    docs = render(helm, "namespaced.yaml")
    roles = [doc for doc in docs if doc["kind"] == "Role"]
    bindings = [doc for doc in docs if doc["kind"] == "RoleBinding"]
    assert [r["metadata"]["namespace"] for r in roles] == [b["metadata"]["namespace"] for b in bindings] == [
        "team-a", "team-b"]
    assert all(rules(role) == OPERATOR_RULES for role in roles)
    subject = {"kind": "ServiceAccount", "name": "selfguide", "namespace": "selfguide-system"}
    assert all(binding["subjects"] == [subject] for binding in bindings)
    assert rules(named(docs, "ClusterRole", "selfguide")) == OBSERVE_NAMESPACES | OBSERVE_CRDS | REVIEW_TOKENS
    assert one(docs, "ClusterRoleBinding")["roleRef"]["name"] == "selfguide"
    claims = [(doc["metadata"]["namespace"], doc["spec"]["storageClassName"], doc["spec"]["accessModes"])
              for doc in docs if doc["kind"] == "PersistentVolumeClaim"]
    assert claims == [("team-a", "fast-rwx", ["ReadWriteMany"]), ("team-b", "fast-rwx", ["ReadWriteMany"])]


@pytest.mark.integration
def test_a_cluster_wide_install_binds_a_cluster_role_that_can_read_no_secrets(helm: Helm):
    docs = render(helm, "cluster-wide.yaml")
    assert rules(named(docs, "ClusterRole", "selfguide")) == OPERATOR_RULES | OBSERVE_CRDS | REVIEW_TOKENS
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "selfguide" and binding["subjects"][0]["name"] == "selfguide"
    assert not [doc for doc in docs if doc["kind"] in ("Role", "RoleBinding", "PersistentVolumeClaim")]
    env = operator_env(docs)
    assert json.loads(env["SELFGUIDE_STAGE_NODE_SELECTOR"]) == {"nvidia.com/gpu.present": "true"}
    assert json.loads(env["SELFGUIDE_STAGE_TOLERATIONS"])[0]["key"] == "nvidia.com/gpu"
    args = operator_container(docs)["args"]
    assert "--json-logs" not in args and "--verbose" in args


@pytest.mark.integration
def test_the_aggregated_roles_let_edit_manage_and_view_read_selfguidejobs(helm: Helm):
    docs = render(helm, "default.yaml")
    edit, view = named(docs, "ClusterRole", "selfguide-edit"), named(docs, "ClusterRole", "selfguide-view")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert {"create", "delete", "patch", "update"} <= rules(edit)[("selfguide.dev", "selfguidejobs")]
    assert ("selfguide.dev", "selfguidejobs/status") not in rules(edit)  # the status is the operator's
    assert rules(view) == {("selfguide.dev", r): {"get", "list", "watch"}
                           for r in ("selfguidejobs", "selfguidejobs/status")}


@pytest.mark.integration
def test_the_operator_runs_restricted_with_probes_on_its_health_endpoint(helm: Helm):
    docs = render(helm, "default.yaml")
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = operator_container(docs)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert "--liveness=http://0.0.0.0:8081/healthz" in container["args"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]


@pytest.mark.integration
def test_the_service_monitor_is_off_by_default_and_scrapes_the_metrics_service(helm: Helm):
    assert not [doc for doc in render(helm, "default.yaml") if doc["kind"] == "ServiceMonitor"]
    docs = render(helm, "servicemonitor.yaml")
    monitor, service = one(docs, "ServiceMonitor"), named(docs, "Service", "selfguide-metrics")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "interval": "15s"}]
    assert service["spec"]["ports"][0] == {"name": "metrics", "port": 9090, "targetPort": "metrics"}
    assert "--metrics-port=9090" in operator_container(docs)["args"]


@pytest.mark.integration
def test_custom_images_and_resources_reach_the_deployment_and_metrics_can_be_off(helm: Helm):
    docs = render(helm, "custom-resources.yaml")
    container = operator_container(docs)
    assert container["image"] == "registry.example.com/selfguide-operator:0.1.0-rc1"
    assert container["resources"] == values("custom-resources.yaml")["resources"]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "registry"}]
    assert "--metrics-port=0" in container["args"]
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Service"] == ["selfguide-progress"]
    env = operator_env(docs)
    assert env["SELFGUIDE_IMAGE_PULL_POLICY"] == "Always" and env["SELFGUIDE_MAX_WORKERS"] == "4"


@pytest.mark.integration
@pytest.mark.parametrize("bad", [
    "watchNamespaces: team-a",
    "watchNamespaces: [Team_A]",
    "stages: {backoffLimit: -1}",
    "stages: {resources: {finetune: {}}}",
    "logging: {format: xml}",
    "outputClaim: {size: lots}",
    "replicas: 2",
    "policy: {allowPrivileged: yes-please}",
    "policy: {allowEverything: true}",
    "policy: {allowedHostPaths: [relative/dir]}",
    "stages: {command: []}",
])
def test_the_schema_rejects_bad_values(helm: Helm, tmp_path: Path, bad: str):
    (tmp_path / "bad.yaml").write_text(bad)
    result = helm("template", "selfguide", str(CHART), "--values", str(tmp_path / "bad.yaml"), check=False)
    assert result.returncode != 0 and "values don't meet the specifications of the schema" in result.stderr


@pytest.mark.integration
def test_the_default_install_is_namespaced_and_cluster_wide_needs_an_empty_watch_list(helm: Helm, tmp_path: Path):
    docs = render(helm, "default.yaml")
    assert [(r["kind"], r["metadata"]["namespace"]) for r in docs if r["kind"] in ("Role", "RoleBinding")] == [
        ("Role", "selfguide-system"), ("RoleBinding", "selfguide-system")]
    assert rules(named(docs, "ClusterRole", "selfguide")) == OBSERVE_NAMESPACES | OBSERVE_CRDS | REVIEW_TOKENS
    assert operator_env(docs)["SELFGUIDE_WATCH_NAMESPACES"] == "selfguide-system"
    env = operator_env(docs)
    assert env["SELFGUIDE_PROGRESS_URL"] == "http://selfguide-progress.selfguide-system.svc:8082"
    assert (env["SELFGUIDE_PROGRESS_PORT"], env["SELFGUIDE_PROGRESS_SECONDS"]) == ("8082", "10")
    assert named(docs, "Service", "selfguide-progress")["spec"]["ports"] == [
        {"name": "progress", "port": 8082, "targetPort": "progress"}]
    (tmp_path / "off.yaml").write_text("progress: {enabled: false}\n")
    off = objects(helm.template(tmp_path / "off.yaml"))
    assert "SELFGUIDE_PROGRESS_URL" not in operator_env(off)
    assert rules(named(off, "ClusterRole", "selfguide")) == OBSERVE_NAMESPACES | OBSERVE_CRDS
    (tmp_path / "both.yaml").write_text("clusterWide: true\nwatchNamespaces: [team-a]\n")
    result = helm("template", "selfguide", str(CHART), "--values", str(tmp_path / "both.yaml"), check=False)
    assert result.returncode != 0 and "leave watchNamespaces empty" in result.stderr


@pytest.mark.integration
def test_the_admission_policies_are_bound_to_the_operators_service_account_and_the_policy_values(
        helm: Helm, tmp_path: Path):
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({
        "policy": {"allowPrivileged": True, "allowedImages": ["registry.example.com/*"],
                   "allowedServiceAccounts": ["trainer"]},
        "stages": {"command": ["python", "/opt/stage.py"]}}))
    docs = objects(helm.template(tmp_path / "policy.yaml"))
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"}
    bindings = {d["spec"]["policyName"]: d for d in docs if d["kind"] == "ValidatingAdmissionPolicyBinding"}
    assert set(policies) == set(bindings) == {"selfguide-stage-jobs", "selfguide-spec-configmaps",
                                              "selfguide-foreign-children"}
    assert all(b["spec"]["validationActions"] == ["Deny"] for b in bindings.values())
    for name, policy in policies.items():
        assert policy["spec"]["failurePolicy"] == "Fail"
        # the operator's own requests; foreign children: everyone else's
        assert policy["spec"]["matchConditions"][0]["expression"] == (
            f'request.userInfo.username {"!=" if name.endswith("foreign-children") else "=="} '
            '"system:serviceaccount:selfguide-system:selfguide"')
    jobs = policies["selfguide-stage-jobs"]["spec"]
    variables = {v["name"]: v["expression"] for v in jobs["variables"]}
    assert json.loads(variables["images"]) == [f"ghcr.io/selfguide/selfguide:{selfguide.__version__}",
                                               "registry.example.com/*"]
    assert json.loads(variables["serviceAccounts"]) == ["trainer"]
    assert not [v for v in jobs["validations"] if "policy.allowPrivileged" in v["message"]]
    env = operator_env(docs)
    assert json.loads(env["SELFGUIDE_POLICY"])["allowedImages"] == ["registry.example.com/*"]
    default = objects(helm.template(VALUES / "default.yaml"))
    validations = next(d for d in default if d["kind"] == "ValidatingAdmissionPolicy"
                       and d["metadata"]["name"] == "selfguide-stage-jobs")["spec"]["validations"]
    assert [v for v in validations if "policy.allowPrivileged" in v["message"]]
    off = tmp_path / "off.yaml"
    off.write_text("admissionPolicy: {enabled: false}\n")
    assert not [d for d in objects(helm.template(off)) if d["kind"].startswith("ValidatingAdmission")]


@pytest.mark.integration
def test_the_admission_policy_knows_the_variables_and_values_the_operator_does(helm: Helm, tmp_path: Path):
    """The policy's copies of selfguide_operator/policy.py's variable lists and of the operator's fixed variables agree,
    and its allow-lists are the policy values (the output claim always among the claims)."""
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump({"policy": {
        "allowedSecrets": ["hf", "team-a/token"], "allowedClaims": ["weights"], "allowedConfigMaps": ["vars"],
        "allowedVolumeTypes": ["nfs"], "allowedEnv": ["HF_ENDPOINT"]}}))
    docs = objects(helm.template(tmp_path / "policy.yaml"))
    jobs = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"
                and d["metadata"]["name"] == "selfguide-stage-jobs")["spec"]
    variables = {v["name"]: json.loads(v["expression"]) for v in jobs["variables"]
                 if v["expression"].startswith(("[", "{"))}
    assert variables["restrictedEnv"] == list(RESTRICTED_ENV)
    assert variables["restrictedEnvPrefixes"] == list(RESTRICTED_ENV_PREFIXES)
    assert variables["safePythonEnv"] == list(SAFE_PYTHON_ENV)
    assert (variables["secrets"], variables["claims"], variables["configMaps"], variables["volumeTypes"],
            variables["allowedEnv"]) == (["hf", "team-a/token"], ["selfguide-data", "weights"], ["vars"], ["nfs"],
                                         ["HF_ENDPOINT"])
    settings = OperatorSettings(progress_url="http://operator:8082")
    job = stage_job(Observed.from_body(manifest("demo", model={"name": "org/m", "hfTokenSecret": {"name": "hf"}})
                                       | {"metadata": {"name": "demo", "namespace": "ns", "uid": "u"}}),
                    "generate", settings, suspend=False, deadline_seconds=None)
    rendered = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    fixed = variables["fixedEnv"]
    assert {name: rendered[name] for name in fixed} == fixed
    assert set(rendered) == set(fixed) | set(variables["operatorEnv"]) | {"HF_TOKEN", "SELFGUIDE_SECRET_ENV"}
    assert variables["secretEnv"] == list(SECRET_ENV)
    assert all(name.startswith(ENV_PREFIX) or name in RESERVED_ENV for name in rendered)


@pytest.mark.integration
def test_model_adapters_are_granted_only_when_asked_for(helm: Helm, tmp_path: Path):
    (tmp_path / "serving.yaml").write_text("serving: {modelAdapters: true}\n")
    role = named(objects(helm.template(tmp_path / "serving.yaml")), "Role", "selfguide")
    assert rules(role) == OPERATOR_RULES | {("model.aibrix.ai", "modeladapters"): {"create", "patch"}}
    assert rules(named(render(helm, "default.yaml"), "Role", "selfguide")) == OPERATOR_RULES
