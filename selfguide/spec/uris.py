"""`pvc://claim/path` URIs: the one parser (the spec, the engine and the operator all use it)."""

from __future__ import annotations

from dataclasses import dataclass

SCHEME = "pvc://"
SEGMENT = r"([^/\t\n\f\r .][^/\t\n\f\r ]*|\.|\.[^/\t\n\f\r .][^/\t\n\f\r ]*|\.\.[^/\t\n\f\r ]+)"
"""A path segment other than `..` (RE2 has no lookahead: the CRD's patterns run on it), ASCII whitespace
spelled out so Python and RE2 agree."""
PVC_PATTERN = rf"pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/{SEGMENT})+/?"
"""`pvc://claim/path` with a path that stays inside the claim (unanchored, for the spec's field patterns)."""


def is_pvc(uri: str) -> bool:
    return uri.startswith(SCHEME)


def checked(value: object) -> object:
    """A field validator (mode="before") of fields that take `pvc://` URIs: a malformed one (`..`) is refused
    with the parser's own message before the field's pattern says only that it does not match."""
    if isinstance(value, str) and is_pvc(value):
        PvcUri.parse(value)
    return value


@dataclass(frozen=True)
class PvcUri:
    """A path on a PersistentVolumeClaim of the job's namespace."""

    claim: str
    path: str
    """Relative to the claim's root, without leading or trailing slashes; never leaves the claim."""

    @classmethod
    def parse(cls, uri: str) -> PvcUri:
        """Raises ValueError naming what is wrong."""
        if not is_pvc(uri):
            raise ValueError(f"{uri}: not a {SCHEME}claim/path URI")
        claim, _, path = uri.removeprefix(SCHEME).partition("/")
        if not claim:
            raise ValueError(f"{uri}: the claim name is missing ({SCHEME}claim/path)")
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise ValueError(f"{uri}: '..' would leave the claim")
        return cls(claim, "/".join(parts))

    def __str__(self) -> str:
        return f"{SCHEME}{self.claim}/{self.path}" if self.path else f"{SCHEME}{self.claim}"
