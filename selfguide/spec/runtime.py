"""Cluster settings: where stage pods run and what they may use. `selfguide run` ignores them.

Kubernetes-native structures (tolerations, affinity, env, volumes, security contexts) are passed through
to the pod as they are and validated by the API server when the Job is created, as Kubeflow Trainer does.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from selfguide.spec.base import SpecModel

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


class PodSettings(SpecModel):
    """Pod settings for stage pods. Unset fields fall back to the operator's defaults."""

    image: Annotated[str | None, Field(max_length=512)] = None
    node_selector: LabelMap | None = None
    tolerations: Annotated[list[KubeObject] | None, Field(max_length=64)] = None
    affinity: KubeObject | None = None
    priority_class_name: Annotated[str | None, Field(max_length=253, pattern=DNS_SUBDOMAIN)] = None
    image_pull_secrets: Annotated[list[LocalObjectRef] | None, Field(max_length=16)] = None
    service_account_name: Annotated[str | None, Field(max_length=253, pattern=DNS_SUBDOMAIN)] = None
    env: Annotated[list[KubeObject] | None, Field(max_length=128)] = None
    """Extra environment variables (use `valueFrom.secretKeyRef` for secrets, never literal values)."""
    env_from: Annotated[list[KubeObject] | None, Field(max_length=32)] = None
    volumes: Annotated[list[KubeObject] | None, Field(max_length=32)] = None
    volume_mounts: Annotated[list[KubeObject] | None, Field(max_length=32)] = None
    shm_size: Quantity | None = None
    """Size of a memory-backed /dev/shm (PyTorch data loaders and NCCL need more than the default 64Mi)."""
    security_context: KubeObject | None = None
    """Container security context."""
    pod_security_context: KubeObject | None = None
    resources: Resources | None = None


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
