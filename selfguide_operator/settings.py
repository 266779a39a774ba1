"""Operator settings: one small model read from `SELFGUIDE_*` environment variables (set by the Helm chart).

Structured values are JSON (`SELFGUIDE_STAGE_RESOURCES`, `SELFGUIDE_STAGE_NODE_SELECTOR`, ...), commands are shell words (`SELFGUIDE_STAGE_COMMAND`),
namespace lists are comma-separated (`SELFGUIDE_WATCH_NAMESPACES`).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from selfguide import __version__
from selfguide.contract.registry import stage_names
from selfguide.spec.runtime import Quantity, Resources

ENV_PREFIX = "SELFGUIDE_"
GPU = "nvidia.com/gpu"


class Policy(BaseModel):
    """What job authors may ask for in `spec.pod` / `spec.stages` (and `spec.model`) beyond the hardened
    defaults; everything is denied unless the administrator allows it (Helm values `policy.*`, the operator's
    `SELFGUIDE_POLICY`). The chart's ValidatingAdmissionPolicy enforces the same settings on the operator's own
    requests (docs/security.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    allow_privileged: bool = False
    """Security contexts may loosen the hardening keys: `privileged`, `allowPrivilegeEscalation`, root
    (`runAsNonRoot: false`, `runAsUser: 0`), a writable root filesystem, `Unconfined` seccomp or AppArmor."""
    allowed_host_paths: list[Annotated[str, Field(min_length=1, pattern=r"^/")]] = []
    """hostPath volumes under these directories (`/` allows any)."""
    allowed_service_accounts: list[Annotated[str, Field(min_length=1)]] = []
    """Service accounts stage pods may run as (`serviceAccountName`); otherwise they run without a token."""
    allowed_images: list[Annotated[str, Field(min_length=1)]] = []
    """Images besides the operator's stage image (`spec.pod.image`): exact, or a prefix ending in `*`."""
    allow_trust_remote_code: bool = False
    """`spec.model.trustRemoteCode: true` (model repositories run their own Python code)."""
    allowed_capabilities: list[Annotated[str, Field(min_length=1, pattern=r"^[A-Z_]+$")]] = []
    """Linux capabilities a container may add (`securityContext.capabilities.add`); `ALL` stays dropped."""
    allowed_secrets: list[Annotated[str, Field(min_length=1, pattern=r"^([a-z0-9-]+/)?[a-z0-9.-]+$")]] = []
    """Secrets `spec.model.hfTokenSecret` and `spec.generation.endpoint.apiKeySecret` may name: `name` (in any namespace) or `namespace/name`; none by
    default (a job with a model token then fails with `InvalidSpec`)."""
    allowed_endpoints: list[Annotated[str, Field(min_length=8, pattern=r"^https?://[^\t\n\f\r ]+$")]] = []
    """URL prefixes a `spec.generation.endpoint.url` with an `apiKeySecret` may start with (the key is sent to that
    server); none by default. An endpoint without a key may be any server."""
    allowed_env: list[Annotated[str, Field(min_length=1)]] = []
    """Variables of `policy.RESTRICTED_ENV` (code-loading or endpoint-redirecting: `PYTHONPATH`, `LD_PRELOAD`,
    `HF_ENDPOINT`, proxies, ...) that `env` may set nonetheless; the operator's own (`SELFGUIDE_*`, `HOME`,
    `HF_HOME`, `HF_TOKEN`, `OPENAI_API_KEY`) never: the spec refuses them."""
    allowed_claims: list[Annotated[str, Field(min_length=1)]] = []
    """PersistentVolumeClaims besides the operator's output claim that stage pods may mount
    (`spec.output.claimName`, `spec.modelCache.claimName`, `pvc://` inputs, volumes); `*` allows any."""
    allowed_config_maps: list[Annotated[str, Field(min_length=1)]] = []
    """ConfigMaps besides the job's own `<job>-spec` that stage pods may mount or take variables from
    (`volumes`, projected sources, `envFrom`); `*` allows any."""
    allowed_volume_types: list[Literal["nfs", "ephemeral"]] = []
    """Volume types besides configMap, emptyDir, persistentVolumeClaim, downwardAPI and projected (`nfs`
    reaches any export of its server; `ephemeral` may clone any claim through its `dataSource`)."""


def _one_gpu_per_stage() -> dict[str, Resources]:
    return {stage: Resources(limits={GPU: "1"}) for stage in stage_names()}


class OperatorSettings(BaseModel):
    """Cluster-wide defaults of the operator; a SelfGuideJob's `spec.pod` and `spec.stages` override them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: Annotated[str, Field(min_length=1)] = f"ghcr.io/selfguide/selfguide:{__version__}"
    """The stage pods' image (the same image as the operator's, with the `engine` extra)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    output_claim: Annotated[str, Field(min_length=1)] = "selfguide-data"
    """The PersistentVolumeClaim, in each job's namespace, that receives artifacts unless `spec.output` names one."""
    stage_command: Annotated[list[str], Field(min_length=1)] = ["selfguide"]
    """The program stage pods run as `<command> stage <stage> --spec ... --workdir ...`. Tests point it at a
    small script that fakes the ML work (tests/operator/fake_stage.py); production never changes it."""
    stage_resources: dict[str, Resources] = Field(default_factory=_one_gpu_per_stage)
    """Default container resources per stage, merged key by key under `spec.pod`/`spec.stages` resources."""
    stage_node_selector: dict[str, str] = {}
    """Node labels stage pods must match (e.g. GPU nodes), unless a job sets its own `nodeSelector`."""
    stage_tolerations: list[dict[str, Any]] = []
    """Tolerations of stage pods (e.g. for tainted GPU nodes), unless a job sets its own `tolerations`."""
    backoff_limit: Annotated[int, Field(ge=0, le=100)] = 2
    """Retries of a stage's Job after a retryable failure (exit code 1), unless the stage sets its own."""
    pending_timeout_seconds: Annotated[int | None, Field(ge=1, le=31_536_000)] = 21_600
    """How long a stage's pod may wait to start (unschedulable, a missing claim, refused by admission) before the job
    fails with PendingTimeout, unless the job sets `pendingTimeoutSeconds`; None: forever. Kueue-suspended stage
    Jobs are not waiting."""
    shm_size: Quantity | None = "1Gi"
    """Default size of the memory-backed /dev/shm of stage pods (unset: the runtime's 64Mi)."""
    watch_namespaces: list[str] = []
    """Namespaces to watch (empty: the namespaces given on the command line, or all of them)."""
    resync_seconds: Annotated[float, Field(gt=0)] = 30.0
    """Interval of the level-triggered safety-net reconcile of each unfinished SelfGuideJob."""
    max_workers: Annotated[int, Field(ge=1, le=256)] = 16
    """Threads that run reconciles (each makes blocking API calls)."""
    progress_port: Annotated[int, Field(ge=0, le=65535)] = 0
    """Port of the progress endpoint stage pods report to (0: off; the chart sets 8082)."""
    progress_url: str | None = None
    """The URL at which stage pods reach that endpoint (the chart sets the operator's Service); unset: stage pods
    get no progress token and send no reports."""
    progress_seconds: Annotated[float, Field(ge=1, le=300)] = 10.0
    """Seconds between a stage pod's progress reports."""
    policy: Policy = Policy()
    """What job authors may set beyond the hardened defaults (JSON, camelCase keys as in the Helm values)."""

    @field_validator("stage_command", mode="before")
    @classmethod
    def _shell_words(cls, value: Any) -> Any:
        if isinstance(value, str):  # a JSON list (the chart's) or shell words
            return json.loads(value) if value.lstrip().startswith("[") else shlex.split(value)
        return value

    @field_validator("watch_namespaces", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    @field_validator("stage_resources", "stage_node_selector", "stage_tolerations", "policy",
                     "pending_timeout_seconds", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> OperatorSettings:
        """Settings from `SELFGUIDE_<FIELD>` variables (e.g. `SELFGUIDE_OUTPUT_CLAIM`); unset ones keep defaults."""
        values = {name: environ[key] for name in cls.model_fields if (key := ENV_PREFIX + name.upper()) in environ}
        return cls.model_validate(values)
