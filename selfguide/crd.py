"""Generate the SelfGuideJob CustomResourceDefinition from the pydantic models (`selfguide crd`).

Pydantic writes JSON Schema 2020-12; the API server wants a *structural* OpenAPI v3 schema: every `$ref`
inlined, no `anyOf`/`oneOf` (optional fields are simply not required; `null` is never valid), no
`additionalProperties: false` (the server prunes and, with kubectl's strict field validation, rejects unknown
fields), numeric `exclusiveMinimum` as OpenAPI v3.0's boolean form, and free-form Kubernetes structures
(`dict[str, Any]`) marked `x-kubernetes-preserve-unknown-fields`. Defaults stay in the schema so the API
server fills them in; a nested object defaults to `{}` when something below it has a default.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from selfguide.contract.status import SelfGuideJobStatus
from selfguide.spec import GROUP, KIND, PLURAL, SHORT_NAME, VERSION, SelfGuideJob

Schema = dict[str, Any]

CRD_FILE = f"crds/{GROUP}_{PLURAL}.yaml"
"""Where the generated CRD lives in the repository (relative to its root)."""

_DROPPED = {"title", "additionalProperties", "propertyNames", "$defs"}
"""JSON Schema keywords with no structural equivalent (a key length becomes a CEL rule instead)."""

_ORDER = {key: i for i, key in enumerate(
    ("description", "type", "format", "enum", "default", "minimum", "exclusiveMinimum", "maximum",
     "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems", "maxProperties",
     "properties", "additionalProperties", "items", "required"))}
"""Key order in the generated file: what a reader looks for first; `x-kubernetes-*` extensions last."""

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Stage", "type": "string", "jsonPath": ".status.stage"},
    {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
    {"name": "Stage%", "type": "number", "jsonPath": '.status.stages[?(@.phase=="Running")].progress.percent'},
    {"name": "ETA(s)", "type": "number", "jsonPath": '.status.stages[?(@.phase=="Running")].progress.etaSeconds'},
    {"name": "Complete", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Complete")].status'},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name", "priority": 1},
    {"name": "Adapter", "type": "string", "jsonPath": ".status.outputs.adapter", "priority": 1},
    {"name": "Gate", "type": "boolean", "jsonPath": ".status.evaluation.gate.passed", "priority": 1},
]


class _Converter:
    """Turns one pydantic JSON schema (with its `$defs`) into a structural schema."""

    def __init__(self, root: Schema) -> None:
        self.defs: dict[str, Schema] = root.get("$defs", {})

    def convert(self, node: Schema) -> Schema:
        node = self._resolve(node)
        out: Schema = {}
        for key, value in node.items():
            if key in _DROPPED or key == "default":
                continue
            if key == "properties":
                out[key] = {name: self.convert(child) for name, child in value.items()}
            elif key == "items":
                out[key] = self.convert(value)
            elif key in ("exclusiveMinimum", "exclusiveMaximum"):
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[key] = True
            elif key == "const":
                out["enum"] = [value]
            else:
                out[key] = copy.deepcopy(value)
        additional = node.get("additionalProperties")
        if additional is True or (node.get("type") == "object" and "properties" not in node and additional is None):
            out["x-kubernetes-preserve-unknown-fields"] = True
        elif isinstance(additional, dict):
            out["additionalProperties"] = self.convert(additional)
        if "required" in out and "properties" in out:
            out["required"] = [name for name in out["required"] if name in out["properties"]]
        default = self._default(node, out)
        if default is not None:
            out["default"] = default
        if (key_length := (node.get("propertyNames") or {}).get("maxLength")) is not None:
            out.setdefault("x-kubernetes-validations", []).append(
                {"rule": f"self.all(k, k.size() <= {key_length})",
                 "message": f"keys must be at most {key_length} characters"})
        if "description" in out:
            out["description"] = " ".join(out["description"].split())
        return dict(sorted(out.items(), key=lambda item: _ORDER.get(item[0], len(_ORDER))))

    def _resolve(self, node: Schema) -> Schema:
        """Inline a `$ref` and unwrap `anyOf: [X, null]`; the referring site's keys win over the target's."""
        if "$ref" in node:
            target = self.defs[node["$ref"].removeprefix("#/$defs/")]
            site = {k: v for k, v in node.items() if k != "$ref"}
            return self._resolve({**target, **site})
        if "anyOf" in node:
            options = [o for o in node["anyOf"] if o.get("type") != "null"]
            if len(options) != 1:
                raise ValueError(f"a union other than Optional[X] has no structural schema: {node['anyOf']}")
            site = {k: v for k, v in node.items() if k != "anyOf"}
            return self._resolve({**options[0], **site})
        return node

    @staticmethod
    def _default(node: Schema, converted: Schema) -> Any:
        """Scalar and list defaults as they are; `{}` for an object whose fields have defaults; never null."""
        default = node.get("default")
        if converted.get("type") == "object" and "properties" in converted:
            has_defaults = any("default" in child for child in converted["properties"].values())
            return {} if default is not None and has_defaults else None
        return copy.deepcopy(default)  # a fresh object: a shared one would be written as a YAML alias


def structural(model_schema: Schema) -> Schema:
    """The structural OpenAPI v3 schema of one pydantic model's JSON schema."""
    return _Converter(model_schema).convert(model_schema)


def openapi_schema() -> Schema:
    """The schema of the whole resource: generated spec and status, metadata left to the API server."""
    schema = structural(SelfGuideJob.model_json_schema(by_alias=True))
    schema.pop("required", None)
    properties = schema["properties"]
    properties["apiVersion"] = {"type": "string", "description": "APIVersion of this object."}
    properties["kind"] = {"type": "string", "description": "Kind of this object."}
    properties["metadata"] = {"type": "object"}
    properties["status"] = structural(SelfGuideJobStatus.model_json_schema(by_alias=True))
    properties["status"]["properties"]["stages"] |= {"x-kubernetes-list-type": "map",
                                                     "x-kubernetes-list-map-keys": ["name"]}
    properties["status"]["properties"]["conditions"] |= {"x-kubernetes-list-type": "map",
                                                         "x-kubernetes-list-map-keys": ["type"]}
    schema["required"] = ["spec"]
    return schema


def custom_resource_definition() -> dict[str, Any]:
    """The CustomResourceDefinition of `selfguidejobs.selfguide.dev`."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "selfguide", "app.kubernetes.io/part-of": "selfguide"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": ["all"],
            },
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": openapi_schema()},
            }],
        },
    }


def render() -> str:
    """The CRD as the YAML file committed under crds/."""
    header = "# Generated by `selfguide crd` from selfguide/spec; do not edit (a test fails on drift).\n"
    return header + yaml.safe_dump(custom_resource_definition(), sort_keys=False, allow_unicode=True, width=120)
