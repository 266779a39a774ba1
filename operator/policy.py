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
from selfguide_operator.settings import OperatorSettings, Policy

VOLUME_TYPES = ("configMap", "emptyDir", "persistentVolumeClaim", "downwardAPI", "ephemeral", "nfs", "projected")
"""Volume types a job may add (hostPath only under `policy.allowedHostPaths`); none can reference a Secret."""
PROJECTED_SOURCES = ("configMap", "downwardAPI", "clusterTrustBundle")
"""Sources of a projected volume a job may use (no `secret`, no `serviceAccountToken`)."""

_LOOSE_FLAGS = (("privileged", True), ("allowPrivilegeEscalation", True), ("readOnlyRootFilesystem", False),
                ("runAsNonRoot", False))


def loosened(context: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The hardening keys of a (container or pod) security context that `context` loosens, with the value
    asked for: (dotted key, value)."""
    found = [(key, loose) for key, loose in _LOOSE_FLAGS if key in context and context[key] is loose]
    if context.get("runAsUser") == 0:
        found.append(("runAsUser", 0))
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


def refusals(spec: SelfGuideJobSpec, settings: OperatorSettings) -> list[str]:
    """Every field that asks for more than the policy allows, as `field.path: problem (the setting)`."""
    policy = settings.policy
    problems = []
    if spec.model.trust_remote_code and not policy.allow_trust_remote_code:
        problems.append("spec.model.trustRemoteCode: true is not allowed (operator setting "
                        "policy.allowTrustRemoteCode)")
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
        problems += _volume_refusals(f"{where}.volumes[{i}]", volume, policy)
    for i, var in enumerate(pod.env or []):
        if isinstance(var, Mapping) and "secretKeyRef" in (var.get("valueFrom") or {}):
            problems.append(f"{where}.env[{i}].valueFrom.secretKeyRef: stage pods get a Secret only through "
                            "spec.model.hfTokenSecret (the operator's admission policy allows no other reference)")
    for i, source in enumerate(pod.env_from or []):
        if isinstance(source, Mapping) and "secretRef" in source:
            problems.append(f"{where}.envFrom[{i}].secretRef: stage pods get a Secret only through "
                            "spec.model.hfTokenSecret (the operator's admission policy allows no other reference)")
    return problems


def _volume_refusals(where: str, volume: Mapping[str, Any], policy: Policy) -> list[str]:
    kinds = [key for key in volume if key != "name"]
    problems = []
    for kind in kinds:
        if kind == "hostPath":
            path = (volume[kind] or {}).get("path", "")
            if not host_path_allowed(path, policy.allowed_host_paths):
                problems.append(_setting(path, f"{where}.hostPath.path", "allowedHostPaths"))
        elif kind not in VOLUME_TYPES:
            problems.append(f"{where}.{kind}: stage pods may only mount {', '.join(VOLUME_TYPES)} or allowed "
                            "hostPath volumes (no Secrets: the operator's admission policy denies the others)")
        elif kind == "projected":
            for j, source in enumerate((volume[kind] or {}).get("sources") or []):
                if bad := [key for key in source if key not in PROJECTED_SOURCES]:
                    problems.append(f"{where}.projected.sources[{j}].{bad[0]}: a projected volume may only hold "
                                    f"{', '.join(PROJECTED_SOURCES)}")
    return problems
