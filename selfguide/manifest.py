"""Load and validate SelfGuideJob manifests, turning every failure into `field.path: problem` lines."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from selfguide.contract.errors import InvalidInput
from selfguide.spec import SelfGuideJob
from selfguide.spec.problems import Problem, problems_from

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_SPEC_BYTES = 900 * 1024
"""Largest spec (as JSON): stage pods read it from a ConfigMap, which holds at most 1 MiB."""


class ManifestError(InvalidInput):
    """A manifest that cannot be used; `problems` lists every reason."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(map(str, problems)))


class SpecTooLarge(ManifestError):
    """A manifest whose spec is over `MAX_SPEC_BYTES` (the operator's failure reason is then SpecTooLarge)."""


MAX_ALIASES = 16
"""YAML aliases a manifest may use: a few shared anchors are fine; hundreds are an expansion bomb (a 751-byte
file of nested aliases expands to gigabytes once validated)."""
MAX_EXPANDED_NODES = 1_000_000
"""YAML nodes a manifest may hold once its aliases are expanded."""


def parse_documents(text: str) -> list[Any]:
    """The YAML documents of a file, empty ones dropped. Raises yaml.YAMLError, also for aliases beyond
    `MAX_ALIASES` or `MAX_EXPANDED_NODES` (checked on the parser's events and node graph, before anything is
    built)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    if "*" in text:  # an alias needs one
        aliases = sum(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=loader))
        if aliases > MAX_ALIASES:
            raise yaml.YAMLError(f"the manifest uses {aliases} YAML aliases; at most {MAX_ALIASES} are allowed")
        for node in yaml.compose_all(text, Loader=loader):
            if node is not None and _expanded(node, {}) > MAX_EXPANDED_NODES:
                raise yaml.YAMLError(f"the manifest expands to more than {MAX_EXPANDED_NODES} YAML nodes")
    return [doc for doc in yaml.load_all(text, Loader=loader) if doc is not None]


def _expanded(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes `node` stands for once aliases are expanded (each shared node counted once per use)."""
    if id(node) in sizes:
        return sizes[id(node)]
    sizes[id(node)] = 1  # a recursive alias counts once
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    size = 1 + sum(_expanded(child, sizes) for child in children)
    sizes[id(node)] = size
    return size


def json_numbers(value: Any) -> Any:
    """`value` with whole floats as integers: JSON has one number type, and the API server takes `2.0` for an
    integer field (a float field takes `2` either way)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: json_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_numbers(item) for item in value]
    return value


def validate_object(obj: Any) -> SelfGuideJob:
    """Validate one decoded document. Raises ManifestError listing every problem."""
    if not isinstance(obj, dict):
        kind = type(obj).__name__ if obj is not None else "nothing"
        raise ManifestError("manifest", [Problem("", f"a manifest must be a mapping, got {kind}")])
    # Python callers may omit apiVersion and kind; a manifest file must name them, as kubectl requires.
    problems = [Problem(key, "required field is missing") for key in ("apiVersion", "kind") if key not in obj]
    try:
        # Strict, on the document's JSON form: types as the API server checks them (no "3600" for an integer, no
        # "yes" for a boolean), while enums and numbers keep their JSON spellings. YAML timestamps become strings.
        job = SelfGuideJob.model_validate_json(json.dumps(json_numbers(obj), default=str), strict=True,
                                               by_alias=True, by_name=False)
    except ValidationError as error:
        problems.extend(problems_from(error))
    else:
        if (size := len(json.dumps(job.spec.to_camel_dict(), ensure_ascii=False).encode())) > MAX_SPEC_BYTES:
            problems.append(Problem("spec", f"the spec takes {size} bytes; at most {MAX_SPEC_BYTES} (stage pods "
                                            "read it from a ConfigMap of at most 1 MiB)"))
            raise SpecTooLarge("manifest", problems)
    if problems:
        raise ManifestError("manifest", problems)
    return job


def load_manifests(path: str | Path) -> list[SelfGuideJob]:
    """Read, parse and validate every SelfGuideJob in a YAML file.

    Raises ManifestError naming the file and every problem; never anything else for bad content.
    """
    source = str(path)
    try:
        raw = Path(path).read_bytes() if source != "-" else _stdin_bytes()
    except OSError as error:
        raise ManifestError(source, [Problem("", f"cannot read file: {error.strerror or error}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ManifestError(source, [Problem("", f"file is {len(raw) / 2**20:.0f} MiB; manifests are small text files")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ManifestError(source, [Problem("", f"not UTF-8 text (byte {error.start})")]) from None
    if "\x00" in text:
        raise ManifestError(source, [Problem("", "not a text file (contains NUL bytes)")])
    if not text.strip():
        raise ManifestError(source, [Problem("", "the file is empty; expected a SelfGuideJob manifest")])
    try:
        documents = parse_documents(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ManifestError(source, [Problem("", f"invalid YAML{where}: {reason}")]) from None
    if not documents:
        raise ManifestError(source, [Problem("", "the file is empty; expected a SelfGuideJob manifest")])
    jobs: list[SelfGuideJob] = []
    problems: list[Problem] = []
    for index, document in enumerate(documents):
        try:
            jobs.append(validate_object(document))
        except ManifestError as error:
            prefix = f"document {index + 1}: " if len(documents) > 1 else ""
            problems.extend(Problem(p.path, prefix + p.message) if not p.path else
                            Problem(f"{prefix}{p.path}", p.message) for p in error.problems)
    if problems:
        raise ManifestError(source, problems)
    return jobs


def load_manifest(path: str | Path) -> SelfGuideJob:
    """Exactly one SelfGuideJob from a file."""
    jobs = load_manifests(path)
    if len(jobs) != 1:
        raise ManifestError(str(path), [Problem("", f"expected one SelfGuideJob, found {len(jobs)}")])
    return jobs[0]


def _stdin_bytes() -> bytes:
    return sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
