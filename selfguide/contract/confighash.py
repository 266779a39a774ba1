"""The configuration hash of a stage as far as the spec goes: the spec sections the stage reads (see the
registry), without the fields that change how it runs but not what it produces.

The runner's stage hash (`selfguide.runner.stage_hash`) covers these sections plus the selfguide version and the
upstream records; the operator, which never sees records, labels each stage Job with this part, so that status
can tell which spec a stage's results come from. A test keeps both views of the sections equal."""

from __future__ import annotations

from typing import Any

from pydantic.alias_generators import to_camel

from selfguide.artifacts import config_hash
from selfguide.contract.registry import stage
from selfguide.spec import SelfGuideJobSpec

EXCLUDED_FROM_HASH = {"model": ("hfTokenSecret",),
                      "generation": ("tensorParallelSize", "kvCacheGib", "endpoint.apiKeySecret",
                                     "endpoint.timeoutSeconds", "endpoint.maxRetries", "endpoint.concurrency"),
                      "training": ("gradientCheckpointing",)}
"""Fields (dotted below their section) that change how a stage runs but not what it produces (where a token
comes from; how many GPUs share the model; memory for the KV cache or for compute; how requests reach a server)."""


def hashed_document(spec: SelfGuideJobSpec) -> dict[str, Any]:
    """The spec's document form without `EXCLUDED_FROM_HASH`: what stage hashes are computed from."""
    document = spec.to_camel_dict()
    for section, fields in EXCLUDED_FROM_HASH.items():
        for field in fields:
            *parents, name = field.split(".")
            part = document.get(section, {})
            for parent in parents:
                part = part.get(parent, {})
            part.pop(name, None)
    return document


def sections(spec: SelfGuideJobSpec, reads: tuple[str, ...]) -> dict[str, Any]:
    """The hashed parts of `spec` a stage reads, by their field names (snake_case, as the registry declares them;
    the document spells them in camelCase)."""
    document = hashed_document(spec)
    return {part: document.get(to_camel(part)) for part in reads}


def spec_sections(spec: SelfGuideJobSpec, name: str) -> dict[str, Any]:
    return sections(spec, stage(name).reads)


def spec_hash(spec: SelfGuideJobSpec, name: str) -> str:
    """A short hash of what stage `name` reads of `spec`."""
    return config_hash(spec_sections(spec, name))
