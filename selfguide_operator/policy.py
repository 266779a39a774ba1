"""The administrator's policy over what a SelfGuideJob may ask of its pods (docs/security.md).

`refusals(spec, settings)` lists every field of `spec.pod`, `spec.stages.<stage>` and `spec.model` that asks for
more than the operator's `policy` settings allow (a job with any fails with `InvalidSpec`), and
`security_context` merges a job's security context over the hardened defaults so that, unless the policy
allows more, the hardening keys can only be made stricter. The chart's ValidatingAdmissionPolicy
(charts/selfguide/templates/admission-policy.yaml) checks the same rules on the Jobs the operator creates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from selfguide.spec import SelfGuideJobSpec
from selfguide.spec.runtime import PodSettings
from selfguide.spec.uris import PvcUri, is_pvc
from selfguide_operator.settings import OperatorSettings, Policy

VOLUME_TYPES = ("configMap", "emptyDir", "persistentVolumeClaim", "downwardAPI", "projected")
"""Volume types a job may add (configMaps and claims as `policy.allowedConfigMaps` / `allowedClaims` say,
hostPath only under `policy.allowedHostPaths`, `nfs` and `ephemeral` only in `policy.allowedVolumeTypes`);
none can reference a Secret."""
PROJECTED_SOURCES = ("configMap", "downwardAPI", "clusterTrustBundle")
"""Sources of a projected volume a job may use (no `secret`, no `serviceAccountToken`)."""

SECRET_ENV = ("HF_TOKEN", "OPENAI_API_KEY")
"""The variables through which a Secret reaches a stage pod: `spec.model.hfTokenSecret`, and the API key of an
OpenAI-compatible generation endpoint; each only from a Secret of `policy.allowedSecrets`."""
RESTRICTED_ENV = (
    "HF_ENDPOINT", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "GCONV_PATH", "BASH_ENV", "ENV",
    "NCCL_NET_PLUGIN", "NCCL_TUNER_PLUGIN", "NCCL_PROFILER_PLUGIN",
)
"""Variables that redirect the stage's requests (with the model token) or load code into it; refused unless
`policy.allowedEnv` lists them, as are `LD_*` and `PYTHON*` (but `SAFE_PYTHON_ENV`)."""
RESTRICTED_ENV_PREFIXES = ("LD_", "PYTHON")
SAFE_PYTHON_ENV = ("PYTHONUNBUFFERED", "PYTHONHASHSEED", "PYTHONFAULTHANDLER", "PYTHONIOENCODING",
                   "PYTHONDONTWRITEBYTECODE", "PYTHONUTF8")
"""`PYTHON*` variables that load no code and redirect nothing."""
SECRET_REFERENCES = tuple(f"$({name})" for name in SECRET_ENV)
"""Kubernetes expands `$(VAR)` in variable values: no other variable may copy a Secret's."""

_LOOSE_FLAGS = (("privileged", True), ("allowPrivilegeEscalation", True), ("readOnlyRootFilesystem", False),
                ("runAsNonRoot", False))


def loosened(context: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The hardening keys of a (container or pod) security context that `context` loosens, with the value
    asked for: (dotted key, value)."""
    found = [(key, loose) for key, loose in _LOOSE_FLAGS if key in context and context[key] is loose]
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        if key in context and context[key] == 0 and context[key] is not False:
            found.append((key, 0))
    groups = context.get("supplementalGroups")
    if isinstance(groups, list) and any(group == 0 and group is not False for group in groups):
        found.append(("supplementalGroups", groups))
    for key in ("seccompProfile", "appArmorProfile"):
        if (context.get(key) or {}).get("type") == "Unconfined":
            found.append((f"{key}.type", "Unconfined"))
    if context.get("procMount") == "Unmasked":
        found.append(("procMount", "Unmasked"))
    if (context.get("windowsOptions") or {}).get("hostProcess") is True:
        found.append(("windowsOptions.hostProcess", True))
    return found


def security_context(defaults: Mapping[str, Any], requested: Mapping[str, Any] | None, policy: Policy, *,
                     container: bool) -> dict[str, Any]:
    """`requested` over the hardened `defaults`, key by key; a hardening key it loosens is ignored unless
    `policy.allowPrivileged`. In a container's context `ALL` capabilities stay dropped and only the capabilities
    `policy.allowedCapabilities` lists can be added."""
    requested = requested or {}
    ignored = set() if policy.allow_privileged else {path.split(".")[0] for path, _ in loosened(requested)}
    merged = dict(defaults) | {k: v for k, v in requested.items() if k not in ignored and k != "capabilities"}
    if container:
        asked = requested.get("capabilities") or {}
        drop = list(dict.fromkeys([*defaults["capabilities"]["drop"], *(asked.get("drop") or [])]))
        add = [cap for cap in asked.get("add") or [] if cap in policy.allowed_capabilities]
        merged["capabilities"] = {"drop": drop} | ({"add": add} if add else {})
    return merged


def image_allowed(image: str, patterns: list[str]) -> bool:
    """`image` is one of `patterns`, or starts with one that ends in `*`."""
    return any(image.startswith(p[:-1]) if p.endswith("*") else image == p for p in patterns)


def host_path_allowed(path: str, allowed: list[str]) -> bool:
    """`path` (without `..`) is one of the `allowed` directories or lies under one."""
    if ".." in path.split("/"):
        return False
    return any(path == a or path.startswith(a.rstrip("/") + "/") for a in allowed)


def name_allowed(name: str, allowed: list[str]) -> bool:
    """`name` is in the allow-list `allowed`, or the list holds `*`."""
    return "*" in allowed or name in allowed


def secret_allowed(name: str, namespace: str | None, allowed: list[str]) -> bool:
    """`policy.allowedSecrets` lists the Secret `name` (of any namespace) or `namespace/name`."""
    return name in allowed or (namespace is not None and f"{namespace}/{name}" in allowed)


def endpoint_allowed(url: str, prefixes: list[str]) -> bool:
    """`url` starts with one of `prefixes` at a path boundary (`http://a:8000` allows `http://a:8000/v1`, not
    `http://a:8000.evil.example/v1`)."""
    return any(url.startswith(p) and (p.endswith("/") or url[len(p):][:1] in ("", "/")) for p in prefixes)


def claim_allowed(claim: str, settings: OperatorSettings) -> bool:
    return claim == settings.output_claim or name_allowed(claim, settings.policy.allowed_claims)


def env_refusal(name: str, policy: Policy) -> str | None:
    """Why a job's `env` may not set `name` under `policy` (None: it may). The operator's own variables never reach
    here: the spec refuses them (`selfguide.spec.runtime.RESERVED_ENV`)."""
    restricted = name in RESTRICTED_ENV or (name.startswith(RESTRICTED_ENV_PREFIXES) and name not in SAFE_PYTHON_ENV)
    if restricted and name not in policy.allowed_env:
        return "it loads code into the stage or redirects its requests (operator setting policy.allowedEnv)"
    return None


def refusals(spec: SelfGuideJobSpec, settings: OperatorSettings, namespace: str | None = None) -> list[str]:
    """Every field that asks for more than the policy allows, as `field.path: problem (the setting)`; a Secret
    in `policy.allowedSecrets` as `namespace/name` counts only for a job of that `namespace`."""
    policy = settings.policy
    problems = []
    if spec.model.trust_remote_code and not policy.allow_trust_remote_code:
        problems.append("spec.model.trustRemoteCode: true is not allowed (operator setting "
                        "policy.allowTrustRemoteCode)")
    endpoint = spec.generation.endpoint
    for field, secret in (("spec.model.hfTokenSecret", spec.model.hf_token_secret),
                          ("spec.generation.endpoint.apiKeySecret", endpoint.api_key_secret if endpoint else None)):
        if secret and not secret_allowed(secret.name, namespace, policy.allowed_secrets):
            problems.append(_setting(secret.name, f"{field}.name", "allowedSecrets"))
    if endpoint and endpoint.api_key_secret and not endpoint_allowed(endpoint.url, policy.allowed_endpoints):
        problems.append(_setting(endpoint.url, "spec.generation.endpoint.url", "allowedEndpoints")
                        + ": the API key would be sent there")
    claims = [("spec.output.claimName", spec.output.claim_name),
              ("spec.modelCache.claimName", spec.model_cache.claim_name if spec.model_cache else None),
              ("spec.model.name", spec.model.name if is_pvc(spec.model.name) else None),
              ("spec.evaluation.path", spec.evaluation.path if spec.evaluation and spec.evaluation.path
               and is_pvc(spec.evaluation.path) else None)]
    for field, value in claims:
        claim = value and (PvcUri.parse(value).claim if field in ("spec.model.name", "spec.evaluation.path")
                           else value)
        if claim and not claim_allowed(claim, settings):
            problems.append(_setting(claim, field if claim == value else f"{field} (claim {claim})",
                                     "allowedClaims"))
    levels: list[tuple[str, PodSettings]] = [("spec.pod", spec.pod)]
    levels += [(f"spec.stages.{name}", getattr(spec.stages, name)) for name in type(spec.stages).model_fields]
    for where, pod in levels:
        problems += _pod_refusals(where, pod, settings)
    return problems


def _setting(value: Any, field: str, setting: str) -> str:
    return f"{field}: {json.dumps(value)} is not allowed (operator setting policy.{setting})"


def _pod_refusals(where: str, pod: PodSettings, settings: OperatorSettings) -> list[str]:
    policy = settings.policy
    problems = []
    if pod.image is not None and pod.image != settings.image and not image_allowed(pod.image, policy.allowed_images):
        problems.append(_setting(pod.image, f"{where}.image", "allowedImages"))
    if pod.service_account_name is not None and pod.service_account_name not in policy.allowed_service_accounts:
        problems.append(_setting(pod.service_account_name, f"{where}.serviceAccountName", "allowedServiceAccounts"))
    for key, context in (("securityContext", pod.security_context), ("podSecurityContext", pod.pod_security_context)):
        if not policy.allow_privileged:
            problems += [_setting(value, f"{where}.{key}.{path}", "allowPrivileged")
                         for path, value in loosened(context or {})]
    for cap in ((pod.security_context or {}).get("capabilities") or {}).get("add") or []:
        if cap not in policy.allowed_capabilities:
            problems.append(_setting(cap, f"{where}.securityContext.capabilities.add", "allowedCapabilities"))
    for i, volume in enumerate(pod.volumes or []):
        problems += _volume_refusals(f"{where}.volumes[{i}]", volume, settings)
    for i, var in enumerate(pod.env or []):
        if not isinstance(var, Mapping):
            continue
        name = str(var.get("name", ""))
        if reason := env_refusal(name, policy):
            problems.append(f"{where}.env[{i}].name: {json.dumps(name)} is not allowed: {reason}")
        if "secretKeyRef" in (var.get("valueFrom") or {}):
            problems.append(f"{where}.env[{i}].valueFrom.secretKeyRef: stage pods get a Secret only through "
                            "spec.model.hfTokenSecret (the operator's admission policy allows no other reference)")
        if copied := [ref for ref in SECRET_REFERENCES if ref in str(var.get("value") or "")]:
            problems.append(f"{where}.env[{i}].value: may not copy a Secret's variable ({copied[0]})")
    for i, source in enumerate(pod.env_from or []):
        if isinstance(source, Mapping) and "secretRef" in source:
            problems.append(f"{where}.envFrom[{i}].secretRef: stage pods get a Secret only through "
                            "spec.model.hfTokenSecret (the operator's admission policy allows no other reference)")
        elif isinstance(source, Mapping) and "configMapRef" in source:
            name = (source["configMapRef"] or {}).get("name", "")
            if not name_allowed(name, policy.allowed_config_maps):
                problems.append(_setting(name, f"{where}.envFrom[{i}].configMapRef.name", "allowedConfigMaps"))
    return problems


def _volume_refusals(where: str, volume: Mapping[str, Any], settings: OperatorSettings) -> list[str]:
    policy = settings.policy
    kinds = [key for key in volume if key != "name"]
    problems = []
    for kind in kinds:
        source = volume[kind] or {}
        if kind == "hostPath":
            path = source.get("path", "")
            if not host_path_allowed(path, policy.allowed_host_paths):
                problems.append(_setting(path, f"{where}.hostPath.path", "allowedHostPaths"))
        elif kind in ("nfs", "ephemeral"):
            if kind not in policy.allowed_volume_types:
                problems.append(_setting(kind, f"{where}.{kind}", "allowedVolumeTypes"))
        elif kind not in VOLUME_TYPES:
            problems.append(f"{where}.{kind}: stage pods may only mount {', '.join(VOLUME_TYPES)}, allowed "
                            "hostPath, nfs or ephemeral volumes (no Secrets: the operator's admission policy denies "
                            "the others)")
        elif kind == "persistentVolumeClaim":
            claim = source.get("claimName", "")
            if not claim_allowed(claim, settings):
                problems.append(_setting(claim, f"{where}.persistentVolumeClaim.claimName", "allowedClaims"))
        elif kind == "configMap":
            name = source.get("name", "")
            if not name_allowed(name, policy.allowed_config_maps):
                problems.append(_setting(name, f"{where}.configMap.name", "allowedConfigMaps"))
        elif kind == "projected":
            for j, projected in enumerate(source.get("sources") or []):
                if bad := [key for key in projected if key not in PROJECTED_SOURCES]:
                    problems.append(f"{where}.projected.sources[{j}].{bad[0]}: a projected volume may only hold "
                                    f"{', '.join(PROJECTED_SOURCES)}")
                elif "configMap" in projected:
                    name = (projected["configMap"] or {}).get("name", "")
                    if not name_allowed(name, policy.allowed_config_maps):
                        problems.append(_setting(name, f"{where}.projected.sources[{j}].configMap.name",
                                                 "allowedConfigMaps"))
    return problems
