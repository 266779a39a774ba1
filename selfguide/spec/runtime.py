"""Cluster settings: where stage pods run and what they may use. `selfguide run` ignores them.

Kubernetes-native structures (tolerations, affinity, env, volumes, security contexts) are passed through
to the pod as they are and validated by the API server when the Job is created, as Kubeflow Trainer does.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, WithJsonSchema, field_validator

from selfguide.spec.base import SpecModel
from selfguide.spec.problems import raise_if_any

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
QUANTITY = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i?|[munkMGTPE])?$"

KubeObject = dict[str, Any]
"""A Kubernetes structure passed through verbatim (schema left to the API server)."""
Quantity = Annotated[str, Field(max_length=64, pattern=QUANTITY)]
LabelMap = Annotated[dict[Annotated[str, Field(max_length=317)], Annotated[str, Field(max_length=63)]],
                     Field(max_length=64)]
ObjectLabels = dict[Annotated[str, Field(max_length=317)], Annotated[str, Field(max_length=63)]]
"""`metadata.labels`: the API server bounds the key and value lengths, not their number."""


class LocalObjectRef(SpecModel):
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]


class Resources(SpecModel):
    """Compute resources of a stage container (`nvidia.com/gpu` counts GPUs)."""

    requests: Annotated[dict[Annotated[str, Field(max_length=253)], Quantity], Field(max_length=32)] = Field(
        default_factory=dict)
    limits: Annotated[dict[Annotated[str, Field(max_length=253)], Quantity], Field(max_length=32)] = Field(
        default_factory=dict)


RESERVED_ENV = ("HOME", "HF_HOME", "HF_TOKEN", "OPENAI_API_KEY")
"""Variables the operator sets in stage pods (with every `SELFGUIDE_*`): a job's `env` may not set them, so that it
can neither replace them (the last of duplicate names wins) nor hide a stage's failure reason."""
RESERVED_ENV_PREFIX = "SELFGUIDE_"
RESERVED_ENV_MESSAGE = "is set by the operator (SELFGUIDE_*, HOME, HF_HOME, HF_TOKEN, OPENAI_API_KEY)"
RESERVED_ENV_RULE = {"x-kubernetes-validations": [{
    "rule": (f"self.all(e, !has(e.name) || !(e.name.startsWith('{RESERVED_ENV_PREFIX}') || "
             f"e.name in {list(RESERVED_ENV)!r}))").replace('"', "'"),
    "message": f"an env name {RESERVED_ENV_MESSAGE}"}]}


ENV_NAME_LENGTH = 256
EnvVar = Annotated[KubeObject, WithJsonSchema({
    "type": "object", "properties": {"name": {"type": "string", "maxLength": ENV_NAME_LENGTH}},
    "additionalProperties": True})]
"""A container's environment variable, passed through verbatim; its `name` is typed so that CRD rules can read it."""


def reserved_env(name: object) -> bool:
    return isinstance(name, str) and (name.startswith(RESERVED_ENV_PREFIX) or name in RESERVED_ENV)


class PodSettings(SpecModel):
    """Pod settings for stage pods. Unset fields fall back to the operator's defaults."""

    image: Annotated[str | None, Field(max_length=512)] = None
    node_selector: LabelMap | None = None
    tolerations: Annotated[list[KubeObject] | None, Field(max_length=64)] = None
    affinity: KubeObject | None = None
    priority_class_name: Annotated[str | None, Field(max_length=253, pattern=DNS_SUBDOMAIN)] = None
    image_pull_secrets: Annotated[list[LocalObjectRef] | None, Field(max_length=16)] = None
    service_account_name: Annotated[str | None, Field(max_length=253, pattern=DNS_SUBDOMAIN)] = None
    env: Annotated[list[EnvVar] | None, Field(max_length=128, json_schema_extra=RESERVED_ENV_RULE)] = None
    """Extra environment variables, none of the operator's own (`SELFGUIDE_*`, `HOME`, `HF_HOME`, `HF_TOKEN`,
    `OPENAI_API_KEY`). Code-loading or endpoint-redirecting ones (`PYTHONPATH`, `LD_PRELOAD`, `HF_ENDPOINT`, ...)
    and Secret references need the administrator's policy (docs/security.md)."""
    env_from: Annotated[list[KubeObject] | None, Field(max_length=32)] = None
    volumes: Annotated[list[KubeObject] | None, Field(max_length=32)] = None
    volume_mounts: Annotated[list[KubeObject] | None, Field(max_length=32)] = None
    shm_size: Quantity | None = None
    """Size of a memory-backed /dev/shm (PyTorch data loaders and NCCL need more than the default 64Mi)."""
    security_context: KubeObject | None = None
    """Container security context."""
    pod_security_context: KubeObject | None = None
    resources: Resources | None = None


    @field_validator("env")
    @classmethod
    def _no_reserved_env(cls, env: list[KubeObject] | None) -> list[KubeObject] | None:
        problems = [(f"[{i}].name", f"must be a string of at most {ENV_NAME_LENGTH} characters")
                    for i, item in enumerate(env or []) if "name" in item
                    and (not isinstance(item["name"], str) or len(item["name"]) > ENV_NAME_LENGTH)]
        raise_if_any(problems + [(f"[{i}].name", f"{item['name']} {RESERVED_ENV_MESSAGE}")
                                 for i, item in enumerate(env or []) if reserved_env(item.get("name"))])
        return env


class StageSettings(PodSettings):
    """Per-stage overrides on top of `pod` and the operator defaults."""

    backoff_limit: Annotated[int | None, Field(ge=0, le=100)] = None
    """Retries of this stage's Job before the SelfGuideJob fails (operator default when unset)."""


class StagesSettings(SpecModel):
    generate: StageSettings = StageSettings()
    train: StageSettings = StageSettings()
    evaluate: StageSettings = StageSettings()


class OutputSpec(SpecModel):
    """Where artifacts land: `<claim>/<namespace>/<name>/` on a PersistentVolumeClaim."""

    claim_name: Annotated[str | None, Field(max_length=253, pattern=DNS_SUBDOMAIN)] = None
    """The output PVC in the job's namespace (the operator's default claim when unset)."""


class ModelCacheSpec(SpecModel):
    """An optional claim mounted as the Hugging Face cache, shared by jobs, so models download once."""

    claim_name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
