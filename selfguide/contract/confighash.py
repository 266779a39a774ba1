"""Stage hashes, the one place they are computed: the spec sections a stage reads (see the registry), without the
fields that change how it runs but not what it produces.

`stage_hash` is what a stage's record must carry to be current (the runner: these sections plus the selfguide
version and the upstream records' hashes); the operator, which never sees records, labels each stage Job with
`spec_hash`, the spec part alone, so that status can tell which spec a stage's results come from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic.alias_generators import to_camel

from selfguide import __version__
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


def stage_hash(spec: SelfGuideJobSpec, name: str, upstream: Mapping[str, str]) -> str:
    """The hash a stage's record must carry to count as complete for `spec`, this selfguide version and these
    upstream record hashes (by stage)."""
    return config_hash({"selfguide": __version__, **spec_sections(spec, name), "upstream": dict(upstream)})
