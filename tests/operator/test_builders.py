"""Unit tests of the child objects the operator creates, and of its settings."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from selfguide.manifest import validate_object
from selfguide_operator.builders import child_labels, spec_config_map, stage_job
from selfguide_operator.observed import Observed
from selfguide_operator.settings import OperatorSettings
from tests.operator.helpers import manifest

SETTINGS = OperatorSettings()


def observed(labels: dict[str, str] | None = None, **spec: Any) -> Observed:
    body = manifest("demo", **spec)
    body["metadata"] |= {"namespace": "team-a", "uid": "uid-1", "generation": 1, "labels": labels or {}}
    return Observed.from_body(body)


def build(stage: str = "generate", settings: OperatorSettings = SETTINGS, **spec: Any) -> dict[str, Any]:
    return stage_job(observed(**spec), stage, settings, suspend=False, deadline_seconds=None)


def container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


def env(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(job)["env"]}


def mounts(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in container(job)["volumeMounts"]}


def volumes(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}


def test_stage_job_identity_owner_and_labels():
    job = build("train", labels={"team": "nlp", "app.kubernetes.io/instance": "argo-app",
                                 "argocd.argoproj.io/instance": "x", "kustomize.toolkit.fluxcd.io/name": "y"})
    meta = job["metadata"]
    assert (meta["name"], meta["namespace"]) == ("demo-train", "team-a")
    assert meta["ownerReferences"] == [{"apiVersion": "selfguide.dev/v1alpha1", "kind": "SelfGuideJob",
                                        "name": "demo", "uid": "uid-1", "controller": True,
                                        "blockOwnerDeletion": True}]
    assert meta["labels"] == {"team": "nlp", "app.kubernetes.io/name": "selfguide",
                              "app.kubernetes.io/managed-by": "selfguide-operator", "selfguide.dev/job": "demo",
                              "selfguide.dev/stage": "train"}
    assert job["spec"]["template"]["metadata"]["labels"] == meta["labels"]


def test_stage_command_reads_the_mounted_spec_and_writes_to_the_output_claim():
    job = build("evaluate")
    assert container(job)["command"] == ["selfguide", "stage", "evaluate", "--spec", "/etc/selfguide/job.yaml",
                                         "--workdir", "/data/team-a/demo"]
    assert mounts(job)["/etc/selfguide"]["readOnly"] is True
    assert volumes(job)["spec"]["configMap"]["name"] == "demo-spec"
    assert volumes(job)["data"]["persistentVolumeClaim"] == {"claimName": "selfguide-data"}
    assert env(job)["SELFGUIDE_TERMINATION_LOG"] == "/dev/termination-log"
    assert container(job)["terminationMessagePolicy"] == "File"  # never the log, which may hold a secret


def test_exit_codes_two_and_three_fail_the_job_at_once():
    spec = build()["spec"]
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    rule = spec["podFailurePolicy"]["rules"][0]
    assert rule == {"action": "FailJob", "onExitCodes": {"containerName": "stage", "operator": "In", "values": [2, 3]}}
    assert spec["backoffLimit"] == 2 and "activeDeadlineSeconds" not in spec


def test_backoff_limit_per_stage():
    assert build("train", stages={"train": {"backoffLimit": 5}})["spec"]["backoffLimit"] == 5
    assert build("generate", stages={"train": {"backoffLimit": 5}})["spec"]["backoffLimit"] == 2


def test_claims_referenced_by_the_spec_are_mounted_read_only():
    job = build(model={"name": "pvc://models/llama/8b"}, evaluation={"path": "pvc://datasets/eval.jsonl"})
    assert env(job)["SELFGUIDE_PVC_ROOT"] == "/mnt/pvc"
    for claim in ("models", "datasets"):
        mount = mounts(job)[f"/mnt/pvc/{claim}"]
        assert mount["readOnly"] is True
        assert volumes(job)[mount["name"]]["persistentVolumeClaim"] == {"claimName": claim, "readOnly": True}


def test_hf_token_comes_from_a_secret_reference_only():
    job = build(model={"name": "meta-llama/Llama-3.2-1B", "hfTokenSecret": {"name": "hf", "key": "token"}})
    assert env(job)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}


def test_model_cache_claim_or_an_empty_dir_backs_the_cache():
    assert volumes(build())["cache"]["emptyDir"] == {}
    job = build(modelCache={"claimName": "hf-cache"})
    assert volumes(job)["cache"]["persistentVolumeClaim"] == {"claimName": "hf-cache"}
    assert env(job)["HF_HOME"] == "/cache/huggingface" and mounts(job)["/cache"]["name"] == "cache"


def test_secure_defaults_and_writable_scratch_dirs():
    job = build()
    security = container(job)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    pod = job["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 1000
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert volumes(job)["tmp"]["emptyDir"] == {} and "/tmp" in mounts(job)
    assert volumes(job)["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}


def test_resources_merge_operator_defaults_job_and_stage_key_by_key():
    job = build("train", pod={"resources": {"limits": {"memory": "16Gi"}, "requests": {"cpu": "2"}}},
                stages={"train": {"resources": {"limits": {"nvidia.com/gpu": "2"}}}})
    assert container(job)["resources"] == {"requests": {"cpu": "2"},
                                           "limits": {"nvidia.com/gpu": "2", "memory": "16Gi"}}
    assert build("generate")["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "limits": {"nvidia.com/gpu": "1"}}


def test_stage_settings_replace_job_settings_field_by_field():
    pod = {"nodeSelector": {"pool": "a100"}, "tolerations": [{"key": "gpu", "operator": "Exists"}],
           "priorityClassName": "batch", "serviceAccountName": "trainer", "imagePullSecrets": [{"name": "regcred"}],
           "env": [{"name": "A", "value": "1"}], "shmSize": "8Gi", "image": "registry/selfguide:dev",
           "securityContext": {"runAsUser": 2000}, "volumes": [{"name": "extra", "emptyDir": {}}],
           "volumeMounts": [{"name": "extra", "mountPath": "/extra"}]}
    job = build("train", pod=pod, stages={"train": {"nodeSelector": {"pool": "h100"}}})
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"pool": "h100"}
    assert spec["tolerations"] == pod["tolerations"] and spec["priorityClassName"] == "batch"
    assert spec["serviceAccountName"] == "trainer" and spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert container(job)["image"] == "registry/selfguide:dev" and env(job)["A"] == "1"
    assert container(job)["securityContext"]["runAsUser"] == 2000
    assert container(job)["securityContext"]["readOnlyRootFilesystem"] is True
    assert volumes(job)["shm"]["emptyDir"]["sizeLimit"] == "8Gi"
    assert volumes(job)["extra"] == {"name": "extra", "emptyDir": {}} and "/extra" in mounts(job)


def test_operator_node_selector_and_tolerations_apply_unless_the_job_sets_its_own():
    gpu_nodes = OperatorSettings(stage_node_selector={"nvidia.com/gpu.present": "true"},
                                 stage_tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}])
    spec = build(settings=gpu_nodes)["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists"}]
    spec = build(settings=gpu_nodes, pod={"nodeSelector": {"pool": "a"}, "tolerations": []})["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"pool": "a"} and spec["tolerations"] == []
    assert "nodeSelector" not in build()["spec"]["template"]["spec"]


def test_suspend_and_deadline_are_passed_to_the_job():
    job = stage_job(observed(), "generate", SETTINGS, suspend=True, deadline_seconds=120)
    assert job["spec"]["suspend"] is True and job["spec"]["activeDeadlineSeconds"] == 120


def test_spec_config_map_holds_a_valid_manifest_and_nothing_else():
    job = observed(labels={"team": "nlp"})
    config_map = spec_config_map(job)
    assert config_map["metadata"]["name"] == "demo-spec"
    assert config_map["metadata"]["labels"] == child_labels(job)
    document = yaml.safe_load(config_map["data"]["job.yaml"])
    assert set(document) == {"apiVersion", "kind", "metadata", "spec"}
    assert document["metadata"] == {"name": "demo", "namespace": "team-a"}
    assert validate_object(document).spec == job.spec


def test_settings_from_environment():
    settings = OperatorSettings.from_env({
        "SELFGUIDE_IMAGE": "registry/selfguide:1", "SELFGUIDE_STAGE_COMMAND": "python '/opt/my stage.py'",
        "SELFGUIDE_STAGE_RESOURCES": '{"train": {"limits": {"nvidia.com/gpu": "8"}}}',
        "SELFGUIDE_WATCH_NAMESPACES": "a, b", "SELFGUIDE_BACKOFF_LIMIT": "0", "UNRELATED": "x",
        "SELFGUIDE_STAGE_NODE_SELECTOR": '{"gpu": "true"}', "SELFGUIDE_STAGE_TOLERATIONS": '[{"key": "gpu"}]',
    })
    assert settings.image == "registry/selfguide:1"
    assert settings.stage_command == ["python", "/opt/my stage.py"]
    assert settings.stage_resources["train"].limits == {"nvidia.com/gpu": "8"}
    assert settings.watch_namespaces == ["a", "b"] and settings.backoff_limit == 0
    assert settings.stage_node_selector == {"gpu": "true"} and settings.stage_tolerations == [{"key": "gpu"}]


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        OperatorSettings.from_env({"SELFGUIDE_BACKOFF_LIMIT": "-1"})


def test_the_variables_that_come_from_secrets_are_named_for_redaction_and_come_last():
    job = build(model={"name": "org/m", "hfTokenSecret": {"name": "hf"}}, pod={"env": [{"name": "A", "value": ""}]})
    names = [e["name"] for e in container(job)["env"]]
    assert names[-2:] == ["HF_TOKEN", "SELFGUIDE_SECRET_ENV"] and env(job)["SELFGUIDE_SECRET_ENV"] == "HF_TOKEN"
    assert "SELFGUIDE_SECRET_ENV" not in env(build())


def test_an_endpoints_api_key_comes_from_its_secret_reference_and_is_named_for_redaction():
    endpoint = {"url": "http://qwen.models:8000/v1", "model": "qwen", "apiKeySecret": {"name": "qwen-api"}}
    job = build(model={"name": "org/m", "hfTokenSecret": {"name": "hf"}},
                generation={"backend": "openai", "endpoint": endpoint})
    assert env(job)["OPENAI_API_KEY"] == {"secretKeyRef": {"name": "qwen-api", "key": "apiKey"}}
    assert env(job)["SELFGUIDE_SECRET_ENV"] == "HF_TOKEN,OPENAI_API_KEY"
