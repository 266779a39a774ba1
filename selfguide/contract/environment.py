"""Environment variables through which the operator (or a user) configures a stage process."""

from __future__ import annotations

import os
from pathlib import Path

from selfguide.contract.errors import InvalidInput, PermanentError
from selfguide.spec.uris import PvcUri

TERMINATION_LOG_ENV = "SELFGUIDE_TERMINATION_LOG"
"""File that receives the stage's one-line JSON outcome (Kubernetes shows it as the termination message)."""
SECRET_ENV_ENV = "SELFGUIDE_SECRET_ENV"
"""Comma-separated names of the variables whose values come from Secrets (set by the operator, e.g. `HF_TOKEN`):
their values never reach the termination message, hence never the job's status or Events."""
PVC_ROOT_ENV = "SELFGUIDE_PVC_ROOT"
"""Where stage pods find claims: `pvc://claim/path` is `$SELFGUIDE_PVC_ROOT/claim/path`."""


def pvc_local_path(uri: str) -> Path:
    """Where `pvc://claim/path` is mounted in this process (under `$SELFGUIDE_PVC_ROOT`). Raises
    PermanentError when no claims are mounted here, InvalidInput for a malformed URI."""
    try:
        parsed = PvcUri.parse(uri)
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    root = os.environ.get(PVC_ROOT_ENV)
    if not root:
        raise PermanentError(f"{uri}: pvc:// paths are only reachable inside stage pods; set {PVC_ROOT_ENV} "
                             "to the directory that holds the claims to use them locally")
    return Path(root) / parsed.claim / parsed.path
