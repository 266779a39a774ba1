"""Pure builders of what a SelfGuideJob owns: the spec ConfigMap and one batch/v1 Job per stage."""

from __future__ import annotations

from typing import Any

import yaml

from selfguide.contract.confighash import spec_hash
from selfguide.contract.environment import PVC_ROOT_ENV, SECRET_ENV_ENV, TERMINATION_LOG_ENV
from selfguide.contract.errors import ExitCode
from selfguide.contract.progress import PROGRESS_SECONDS_ENV, PROGRESS_TOKEN_ENV, PROGRESS_URL_ENV
from selfguide.contract.registry import stage as stage_definition
from selfguide.spec import API_VERSION, KIND, SelfGuideJobSpec
from selfguide.spec.endpoint import API_KEY_ENV
from selfguide.spec.runtime import StageSettings
from selfguide.spec.uris import PvcUri, is_pvc
from selfguide_operator.names import (
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_GENERATION,
    CACHE_DIR,
    CLAIMS_DIR,
    CONTAINER,
    DATA_DIR,
    KUEUE_QUEUE_LABEL,
    LABEL_JOB,
    LABEL_STAGE,
    MANAGED_BY,
    SPEC_DIR,
    SPEC_FILE,
    TERMINATION_LOG,
    spec_config_map_name,
    stage_job_name,
    workdir,
)
from selfguide_operator.observed import Observed
from selfguide_operator.policy import security_context
from selfguide_operator.progress import TOKEN_DIR, TOKEN_FILE, token_volume
from selfguide_operator.settings import OperatorSettings

GITOPS_LABELS = ("app.kubernetes.io/instance",)
GITOPS_PREFIXES = ("argocd.argoproj.io/", "kustomize.toolkit.fluxcd.io/", "helm.toolkit.fluxcd.io/")
"""Tracking labels of Argo CD and Flux: copied onto children, they would make those tools prune or adopt them."""

HF_TOKEN_ENV = "HF_TOKEN"
"""The one variable through which a Secret reaches a stage pod (`spec.model.hfTokenSecret`); the chart's
admission policy denies the operator any other Secret reference."""
RUN_AS = 1000
POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
}


def kueue_managed(job: Observed) -> bool:
    """Kueue admits this job's stage Jobs (it owns their `spec.suspend`)."""
    return KUEUE_QUEUE_LABEL in job.labels


def output_claim(spec: SelfGuideJobSpec, settings: OperatorSettings) -> str:
    return spec.output.claim_name or settings.output_claim


def artifact_uri(job: Observed, settings: OperatorSettings, stage: str) -> str:
    """Where the stage's main artifact lands on the output claim (see the stage registry)."""
    assert job.spec is not None
    artifact = stage_definition(stage).artifact(job.spec)
    return str(PvcUri(output_claim(job.spec, settings), f"{job.namespace}/{job.name}/{artifact}"))


def child_labels(job: Observed, stage: str | None = None) -> dict[str, str]:
    """The job's own labels (Kueue's included, GitOps tracking ones left out) plus ours."""
    labels = {k: v for k, v in job.labels.items() if k not in GITOPS_LABELS and not k.startswith(GITOPS_PREFIXES)}
    labels |= {"app.kubernetes.io/name": "selfguide", "app.kubernetes.io/managed-by": MANAGED_BY, LABEL_JOB: job.name}
    return labels | ({LABEL_STAGE: stage} if stage else {})


def child_metadata(job: Observed, name: str, stage: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": job.namespace,
        "labels": child_labels(job, stage),
        "ownerReferences": [{"apiVersion": API_VERSION, "kind": KIND, "name": job.name, "uid": job.uid,
                             "controller": True, "blockOwnerDeletion": True}],
    }


def spec_config_map(job: Observed) -> dict[str, Any]:
    """The manifest that stage pods read at /etc/selfguide/job.yaml."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(job, spec_config_map_name(job.name)),
        "data": {SPEC_FILE: yaml.safe_dump(job.manifest(), sort_keys=False, allow_unicode=True)},
    }


def stage_settings(spec: SelfGuideJobSpec, stage: str) -> StageSettings:
    """`spec.stages.<stage>` over `spec.pod`, field by field (a field set on the stage replaces the job's)."""
    job_level = spec.pod.model_dump(exclude_none=True)
    stage_level = getattr(spec.stages, stage).model_dump(exclude_none=True)
    return StageSettings.model_validate(job_level | stage_level)


def resources(spec: SelfGuideJobSpec, stage: str, settings: OperatorSettings) -> dict[str, dict[str, str]]:
    """Operator default < `spec.pod.resources` < `spec.stages.<stage>.resources`, merged key by key."""
    layers = [settings.stage_resources.get(stage), spec.pod.resources, getattr(spec.stages, stage).resources]
    merged: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    for layer in filter(None, layers):
        merged["requests"] |= layer.requests
        merged["limits"] |= layer.limits
    return {kind: values for kind, values in merged.items() if values}


def input_claims(spec: SelfGuideJobSpec) -> list[str]:
    """Claims the spec reads through `pvc://claim/path` (model weights, evaluation set)."""
    uris = [spec.model.name, spec.evaluation.path if spec.evaluation else None]
    return sorted({PvcUri.parse(uri).claim for uri in uris if uri and is_pvc(uri)})


def _volumes(job: Observed, stage: StageSettings, settings: OperatorSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    assert job.spec is not None
    spec = job.spec
    cache = ({"persistentVolumeClaim": {"claimName": spec.model_cache.claim_name}} if spec.model_cache
             else {"emptyDir": {}})
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": spec_config_map_name(job.name),
                                       "items": [{"key": SPEC_FILE, "path": SPEC_FILE}]}},
        {"name": "data", "persistentVolumeClaim": {"claimName": output_claim(spec, settings)}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "cache", **cache},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
        {"name": "data", "mountPath": DATA_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "cache", "mountPath": CACHE_DIR},
    ]
    if shm := stage.shm_size or settings.shm_size:
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}})
        mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    if settings.progress_url:
        token, token_mount = token_volume()
        volumes.append(token)
        mounts.append(token_mount)
    for i, claim in enumerate(input_claims(spec)):
        volumes.append({"name": f"input-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": f"input-{i}", "mountPath": f"{CLAIMS_DIR}/{claim}", "readOnly": True})
    return volumes + (stage.volumes or []), mounts + (stage.volume_mounts or [])


def _env(spec: SelfGuideJobSpec, stage: StageSettings, settings: OperatorSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": TERMINATION_LOG_ENV, "value": TERMINATION_LOG},
        {"name": PVC_ROOT_ENV, "value": CLAIMS_DIR},
        {"name": "HOME", "value": "/tmp"},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        {"name": "SELFGUIDE_CACHE", "value": f"{CACHE_DIR}/selfguide"},
    ]
    if settings.progress_url:
        env += [{"name": PROGRESS_URL_ENV, "value": settings.progress_url},
                {"name": PROGRESS_TOKEN_ENV, "value": f"{TOKEN_DIR}/{TOKEN_FILE}"},
                {"name": PROGRESS_SECONDS_ENV, "value": f"{settings.progress_seconds:g}"}]
    endpoint = spec.generation.endpoint
    secrets = {name: ref for name, ref in ((HF_TOKEN_ENV, spec.model.hf_token_secret),
                                           (API_KEY_ENV, endpoint.api_key_secret if endpoint else None)) if ref}
    secret_env: list[dict[str, Any]] = [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}} for name, ref in secrets.items()
    ]
    if secrets:
        secret_env.append({"name": SECRET_ENV_ENV, "value": ",".join(secrets)})
    # Last, so that a job's own variables cannot replace them (the last of duplicate names wins).
    return env + (stage.env or []) + secret_env


def stage_job(job: Observed, stage: str, settings: OperatorSettings, *, suspend: bool,
              deadline_seconds: int | None) -> dict[str, Any]:
    """The batch/v1 Job running `selfguide stage <stage>`; exit codes 2 and 3 (invalid input, permanent
    failure) fail it at once instead of spending retries."""
    assert job.spec is not None
    spec = job.spec
    pod = stage_settings(spec, stage)
    volumes, mounts = _volumes(job, pod, settings)
    container = {
        "name": CONTAINER,
        "image": pod.image or settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": [*settings.stage_command, "stage", stage, "--spec", f"{SPEC_DIR}/{SPEC_FILE}",
                    "--workdir", workdir(job.namespace, job.name)],
        "env": _env(spec, pod, settings),
        "envFrom": pod.env_from or [],
        "resources": resources(spec, stage, settings),
        "securityContext": security_context(CONTAINER_SECURITY, pod.security_context, settings.policy,
                                            container=True),
        "terminationMessagePath": TERMINATION_LOG,
        # Never the log's tail: a crashing stage that printed a secret would put it into status and Events.
        "terminationMessagePolicy": "File",
        "volumeMounts": mounts,
    }
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "securityContext": security_context(POD_SECURITY, pod.pod_security_context, settings.policy,
                                            container=False),
        "nodeSelector": settings.stage_node_selector or None if pod.node_selector is None else pod.node_selector,
        "tolerations": settings.stage_tolerations or None if pod.tolerations is None else pod.tolerations,
        "affinity": pod.affinity,
        "priorityClassName": pod.priority_class_name,
        "serviceAccountName": pod.service_account_name,
        # Stage code never calls the API: no token unless a job asks for a service account (and may).
        "automountServiceAccountToken": None if pod.service_account_name else False,
        "imagePullSecrets": [ref.model_dump() for ref in pod.image_pull_secrets or []] or None,
    }
    metadata = child_metadata(job, stage_job_name(job.name, stage), stage)
    metadata["annotations"] = {ANNOTATION_GENERATION: str(job.generation),
                               ANNOTATION_CONFIG_HASH: spec_hash(spec, stage)}
    job_spec = {
        "backoffLimit": settings.backoff_limit if pod.backoff_limit is None else pod.backoff_limit,
        "suspend": suspend,
        "activeDeadlineSeconds": deadline_seconds,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob",
             "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [ExitCode.INVALID_INPUT.value, ExitCode.PERMANENT.value]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]},
        "template": {"metadata": {"labels": metadata["labels"]}, "spec": _without_nulls(pod_spec)},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": _without_nulls(job_spec),
    }


def _without_nulls(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
