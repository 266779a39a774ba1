"""Unit tests of the administrator's policy: what a job may ask of its pods, and how security contexts merge."""

from __future__ import annotations

from typing import Any

import pytest

from selfguide.contract.status import Phase
from selfguide_operator.builders import CONTAINER_SECURITY, POD_SECURITY
from selfguide_operator.planner import plan
from selfguide_operator.policy import refusals
from selfguide_operator.settings import OperatorSettings, Policy
from tests.operator.test_builders import build, container, observed, volumes
from tests.operator.test_planner import NOW

ROOT_PRIVILEGED = {"privileged": True, "runAsUser": 0, "runAsNonRoot": False, "allowPrivilegeEscalation": True,
                   "readOnlyRootFilesystem": False, "capabilities": {"add": ["SYS_ADMIN"], "drop": []},
                   "seccompProfile": {"type": "Unconfined"}}
HOST_ROOT = {"volumes": [{"name": "host", "hostPath": {"path": "/"}}],
             "volumeMounts": [{"name": "host", "mountPath": "/host"}]}
PERMISSIVE = OperatorSettings(policy=Policy(allow_privileged=True, allowed_host_paths=["/"],
                                            allowed_capabilities=["SYS_ADMIN"]))


DEFAULTS = OperatorSettings()


def refused(settings: OperatorSettings = DEFAULTS, **spec: Any) -> list[str]:
    job = observed(**spec)
    assert job.spec is not None, job.problems
    return refusals(job.spec, settings)


@pytest.mark.parametrize(("spec", "field", "setting"), [
    ({"pod": {"securityContext": {"privileged": True}}}, "spec.pod.securityContext.privileged", "allowPrivileged"),
    ({"stages": {"train": {"securityContext": {"runAsUser": 0}}}}, "spec.stages.train.securityContext.runAsUser",
     "allowPrivileged"),
    ({"pod": {"podSecurityContext": {"runAsNonRoot": False}}}, "spec.pod.podSecurityContext.runAsNonRoot",
     "allowPrivileged"),
    ({"pod": {"securityContext": {"allowPrivilegeEscalation": True}}},
     "spec.pod.securityContext.allowPrivilegeEscalation", "allowPrivileged"),
    ({"pod": {"securityContext": {"seccompProfile": {"type": "Unconfined"}}}},
     "spec.pod.securityContext.seccompProfile.type", "allowPrivileged"),
    ({"pod": {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}},
     "spec.pod.securityContext.capabilities.add", "allowedCapabilities"),
    ({"pod": HOST_ROOT}, "spec.pod.volumes[0].hostPath.path", "allowedHostPaths"),
    ({"pod": {"serviceAccountName": "admin"}}, "spec.pod.serviceAccountName", "allowedServiceAccounts"),
    ({"stages": {"generate": {"image": "evil.example.com/miner:1"}}}, "spec.stages.generate.image",
     "allowedImages"),
    ({"model": {"name": "org/model", "trustRemoteCode": True}}, "spec.model.trustRemoteCode",
     "allowTrustRemoteCode"),
    ({"pod": {"podSecurityContext": {"runAsGroup": 0}}}, "spec.pod.podSecurityContext.runAsGroup",
     "allowPrivileged"),
    ({"pod": {"podSecurityContext": {"fsGroup": 0}}}, "spec.pod.podSecurityContext.fsGroup", "allowPrivileged"),
    ({"pod": {"podSecurityContext": {"supplementalGroups": [5, 0]}}},
     "spec.pod.podSecurityContext.supplementalGroups", "allowPrivileged"),
    ({"stages": {"train": {"securityContext": {"runAsGroup": 0}}}}, "spec.stages.train.securityContext.runAsGroup",
     "allowPrivileged"),
    ({"model": {"name": "org/m", "hfTokenSecret": {"name": "hf"}}}, "spec.model.hfTokenSecret.name",
     "allowedSecrets"),
    ({"pod": {"env": [{"name": "PYTHONPATH", "value": "/etc/selfguide"}]}}, "spec.pod.env[0].name", "allowedEnv"),
    ({"pod": {"env": [{"name": "LD_PRELOAD", "value": "/x.so"}]}}, "spec.pod.env[0].name", "allowedEnv"),
    ({"stages": {"generate": {"env": [{"name": "HF_ENDPOINT", "value": "https://evil.example"}]}}},
     "spec.stages.generate.env[0].name", "allowedEnv"),
    ({"output": {"claimName": "other"}}, "spec.output.claimName", "allowedClaims"),
    ({"modelCache": {"claimName": "hf-cache"}}, "spec.modelCache.claimName", "allowedClaims"),
    ({"model": {"name": "pvc://weights/llama"}}, "spec.model.name (claim weights)", "allowedClaims"),
    ({"pod": {"volumes": [{"name": "c", "persistentVolumeClaim": {"claimName": "other"}}]}},
     "spec.pod.volumes[0].persistentVolumeClaim.claimName", "allowedClaims"),
    ({"pod": {"volumes": [{"name": "c", "configMap": {"name": "code"}}]}}, "spec.pod.volumes[0].configMap.name",
     "allowedConfigMaps"),
    ({"pod": {"envFrom": [{"configMapRef": {"name": "vars"}}]}}, "spec.pod.envFrom[0].configMapRef.name",
     "allowedConfigMaps"),
    ({"pod": {"volumes": [{"name": "n", "nfs": {"server": "nfs.example", "path": "/"}}]}},
     "spec.pod.volumes[0].nfs", "allowedVolumeTypes"),
    ({"pod": {"volumes": [{"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}},
     "spec.pod.volumes[0].ephemeral", "allowedVolumeTypes"),
])
def test_each_loosening_is_refused_naming_the_field_and_the_setting(spec, field, setting):
    [problem] = refused(**spec)
    assert problem.startswith(f"{field}: ") and f"(operator setting policy.{setting})" in problem


def test_secrets_reach_pods_only_through_the_model_token():
    problems = refused(pod={"env": [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
                            "envFrom": [{"secretRef": {"name": "s"}}],
                            "volumes": [{"name": "s", "secret": {"secretName": "s"}},
                                        {"name": "p", "projected": {"sources": [{"secret": {"name": "s"}}]}}]})
    assert [p.split(":")[0] for p in problems] == [
        "spec.pod.volumes[0].secret", "spec.pod.volumes[1].projected.sources[0].secret",
        "spec.pod.env[0].valueFrom.secretKeyRef", "spec.pod.envFrom[0].secretRef"]
    allowed = OperatorSettings(policy=Policy(allowed_secrets=["hf", "team-a/team-token"]))
    assert not refused(allowed, model={"name": "org/m", "hfTokenSecret": {"name": "hf"}})
    job = observed(model={"name": "org/m", "hfTokenSecret": {"name": "team-token"}})
    assert job.spec is not None
    assert not refusals(job.spec, allowed, "team-a") and refusals(job.spec, allowed, "team-b")


def test_an_endpoints_api_key_goes_only_to_an_allowed_secret_and_server():
    endpoint = {"url": "http://qwen.models:8000/v1", "model": "qwen", "apiKeySecret": {"name": "qwen-api"}}
    generation = {"backend": "openai", "endpoint": endpoint}
    assert [p.split(":")[0] for p in refused(generation=generation)] == [
        "spec.generation.endpoint.apiKeySecret.name", "spec.generation.endpoint.url"]
    allowed = OperatorSettings(policy=Policy(allowed_secrets=["qwen-api"], allowed_endpoints=["http://qwen.models:8000"]))
    assert not refused(allowed, generation=generation)
    elsewhere = {**generation, "endpoint": {**endpoint, "url": "http://qwen.models:8000.evil.example/v1"}}
    [problem] = refused(allowed, generation=elsewhere)
    assert "(operator setting policy.allowedEndpoints): the API key would be sent there" in problem
    assert not refused(generation={**generation, "endpoint": {"url": "http://any.example/v1", "model": "m"}})


@pytest.mark.parametrize("name", ["SELFGUIDE_TERMINATION_LOG", "SELFGUIDE_SECRET_ENV", "SELFGUIDE_ANYTHING", "HOME",
                                  "HF_HOME", "HF_TOKEN", "OPENAI_API_KEY"])
def test_a_job_may_not_set_the_operators_own_variables_whatever_the_policy(name):
    """Refused by the spec itself (and the CRD: tests/operator/test_rule_agreement.py), before any policy."""
    job = observed(stages={"train": {"env": [{"name": "A", "value": "1"}, {"name": name, "value": "x"}]}})
    assert job.spec is None and f"spec.stages.train.env[1].name: {name} is set by the operator" in job.problems


def test_restricted_variables_pass_when_allowed_and_harmless_ones_always():
    assert not refused(pod={"env": [{"name": "PYTHONUNBUFFERED", "value": "1"}, {"name": "NCCL_DEBUG", "value": "x"},
                                    {"name": "HF_HUB_OFFLINE", "value": "1"}]})
    settings = OperatorSettings(policy=Policy(allowed_env=["HF_ENDPOINT", "PYTHONPATH"]))
    assert not refused(settings, pod={"env": [{"name": "HF_ENDPOINT", "value": "https://mirror.example"},
                                              {"name": "PYTHONPATH", "value": "/opt/lib"}]})
    [problem] = refused(pod={"env": [{"name": "COPY", "value": "$(HF_TOKEN)"}]})
    assert problem.startswith("spec.pod.env[0].value: ")


def test_claims_config_maps_and_volume_types_pass_when_allowed():
    settings = OperatorSettings(policy=Policy(allowed_claims=["weights", "hf-cache", "other"],
                                              allowed_config_maps=["vars"], allowed_volume_types=["nfs"]))
    assert not refused(settings, output={"claimName": "other"}, modelCache={"claimName": "hf-cache"},
                       model={"name": "pvc://weights/llama"},
                       pod={"envFrom": [{"configMapRef": {"name": "vars"}}],
                            "volumes": [{"name": "v", "configMap": {"name": "vars"}},
                                        {"name": "p", "projected": {"sources": [{"configMap": {"name": "vars"}}]}},
                                        {"name": "n", "nfs": {"server": "nfs.example", "path": "/"}}]})
    assert not refused(OperatorSettings(policy=Policy(allowed_claims=["*"], allowed_config_maps=["*"])),
                       output={"claimName": "any"}, pod={"volumes": [{"name": "v", "configMap": {"name": "any"}}]})
    assert not refused(output={"claimName": "selfguide-data"})  # the operator's own output claim
    [problem] = refused(settings, pod={"volumes": [
        {"name": "p", "projected": {"sources": [{"configMap": {"name": "code"}}]}}]})
    assert problem.startswith("spec.pod.volumes[0].projected.sources[0].configMap.name: ")


def test_what_the_policy_allows_passes():
    settings = OperatorSettings(image="registry/selfguide:1", policy=Policy(
        allowed_images=["registry.example.com/team/*"], allowed_service_accounts=["trainer"],
        allowed_host_paths=["/models"], allow_trust_remote_code=True))
    assert not refused(settings, pod={"image": "registry.example.com/team/selfguide:2", "serviceAccountName": "trainer",
                                      "volumes": [{"name": "m", "hostPath": {"path": "/models/llama"}}]},
                       stages={"train": {"image": "registry/selfguide:1"}},
                       model={"name": "org/m", "trustRemoteCode": True})
    assert refused(settings, pod={"volumes": [{"name": "m", "hostPath": {"path": "/models/../etc"}}]})
    assert refused(settings, pod={"volumes": [{"name": "m", "hostPath": {"path": "/models-other"}}]})
    assert not refused(pod={"securityContext": {"runAsUser": 2000, "capabilities": {"drop": ["NET_RAW"]}},
                            "podSecurityContext": {"fsGroup": 3000}})


def test_a_refused_job_fails_with_invalid_spec_and_creates_nothing():
    result = plan(observed(pod={"securityContext": {"privileged": True}, **HOST_ROOT}), {}, OperatorSettings(), NOW)
    assert result.status.phase is Phase.FAILED and not result.actions
    failed = next(c for c in result.status.conditions if c.type == "Failed")
    assert failed.reason == "InvalidSpec"
    assert "spec.pod.securityContext.privileged" in failed.message and "policy.allowPrivileged" in failed.message
    assert "spec.pod.volumes[0].hostPath.path" in failed.message
    assert plan(observed(pod={"securityContext": {"privileged": True}}), {}, PERMISSIVE, NOW).actions


def test_security_contexts_merge_so_hardening_keys_only_get_stricter():
    job = build(pod={"securityContext": ROOT_PRIVILEGED | {"runAsGroup": 0},
                     "podSecurityContext": {"runAsUser": 0, "runAsNonRoot": False, "runAsGroup": 0,
                                            "supplementalGroups": [0], "fsGroup": 5}})
    assert container(job)["securityContext"] == CONTAINER_SECURITY
    assert job["spec"]["template"]["spec"]["securityContext"] == POD_SECURITY | {"fsGroup": 5}
    groups = build(pod={"podSecurityContext": {"fsGroup": 0, "supplementalGroups": [4000]}})
    assert groups["spec"]["template"]["spec"]["securityContext"] == POD_SECURITY | {"supplementalGroups": [4000]}
    stricter = build(pod={"securityContext": {"runAsUser": 4000, "capabilities": {"drop": ["NET_RAW"]}}})
    assert container(stricter)["securityContext"] == CONTAINER_SECURITY | {
        "runAsUser": 4000, "capabilities": {"drop": ["ALL", "NET_RAW"]}}


def test_what_the_policy_allows_is_rendered_as_asked():
    job = build(settings=PERMISSIVE, pod={"securityContext": ROOT_PRIVILEGED, **HOST_ROOT})
    security = container(job)["securityContext"]
    assert security["privileged"] is True and security["runAsUser"] == 0 and security["runAsNonRoot"] is False
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert volumes(job)["host"] == {"name": "host", "hostPath": {"path": "/"}}


def test_stage_pods_mount_no_token_unless_a_service_account_is_set():
    assert build()["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    spec = build(pod={"serviceAccountName": "trainer"})["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "trainer" and "automountServiceAccountToken" not in spec


def test_the_policy_setting_is_json_with_the_helm_values_keys():
    settings = OperatorSettings.from_env({"SELFGUIDE_POLICY": '{"allowPrivileged": true, "allowedImages": ["r/*"]}',
                                          "SELFGUIDE_STAGE_COMMAND": '["python", "/opt/my stage.py"]'})
    assert settings.policy == Policy(allow_privileged=True, allowed_images=["r/*"])
    assert settings.stage_command == ["python", "/opt/my stage.py"]
    with pytest.raises(ValueError):
        OperatorSettings.from_env({"SELFGUIDE_POLICY": '{"allowEverything": true}'})
