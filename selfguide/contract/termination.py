"""The termination message: the one-line JSON a stage process leaves where Kubernetes reads it.

`selfguide stage` writes it (to `$SELFGUIDE_TERMINATION_LOG`); the operator parses it with `parse` and reads
the result with the stage's own result model. At most 4096 bytes, always valid JSON.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError

from selfguide.contract.environment import SECRET_ENV_ENV, TERMINATION_LOG_ENV
from selfguide.contract.registry import stage
from selfguide.contract.results import StageResult
from selfguide.spec.base import SpecModel

REDACTED = "[redacted]"
MAX_TERMINATION_MESSAGE = 4096
"""Kubernetes keeps at most this many bytes of a termination message."""

log = logging.getLogger(__name__)


class TerminationMessage(SpecModel):
    """How a stage process ended."""

    stage: Annotated[str | None, Field(max_length=64)] = None
    ok: bool
    skipped: bool = False
    """The stage had already completed with the same configuration and upstream records."""
    permanent: bool = False
    """A failure that a retry cannot fix (exit code 2 or 3)."""
    error: str | None = None
    summary: dict[str, Any] | None = None
    """The stage's result (its result model in camelCase); dropped when the message would be too long."""

    def result(self) -> StageResult | None:
        """The summary read with the stage's result model. Raises pydantic.ValidationError when it does not
        fit the model (the contract was broken), InvalidInput for an unknown stage."""
        if self.summary is None or self.stage is None:
            return None
        return stage(self.stage).result.model_validate(self.summary)

    def render(self) -> str:
        """One line of JSON within `MAX_TERMINATION_MESSAGE` bytes: the summary is dropped and the error
        shortened when needed, never cut mid-JSON."""
        text = json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":"),
                          ensure_ascii=False)
        if len(text.encode()) <= MAX_TERMINATION_MESSAGE:
            return text
        essential = self.model_copy(update={"summary": None, "error": None})
        room = MAX_TERMINATION_MESSAGE - len(essential.render().encode()) - 64
        if self.error:  # a character is at most 6 bytes once JSON-escaped
            essential = essential.model_copy(
                update={"error": self.error.encode()[: max(0, room) // 6].decode(errors="ignore") + "..."})
        return essential.render()


def secret_values(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The values of the variables `$SELFGUIDE_SECRET_ENV` names (those that come from Secrets), longest first."""
    names = [name.strip() for name in environ.get(SECRET_ENV_ENV, "").split(",")]
    return sorted({value for name in names if name and (value := environ.get(name))}, key=len, reverse=True)


def redact(text: str, secrets: list[str]) -> str:
    """`text` with every occurrence of each secret value replaced by [redacted]."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def write(message: TerminationMessage) -> None:
    """Record `message` where Kubernetes reads the termination message (nothing when the variable is unset),
    with the values of the Secret-backed variables redacted: the operator copies it into status and Events."""
    path = os.environ.get(TERMINATION_LOG_ENV)
    if not path:
        return
    try:
        if message.error and (secrets := secret_values()):
            message = message.model_copy(update={"error": redact(message.error, secrets)})
        Path(path).write_text(message.render(), encoding="utf-8")
    except OSError as error:
        log.warning("cannot write the termination message to %s: %s", path, error)


def parse(text: str) -> TerminationMessage | None:
    """The message in a container's termination text; None when the text is not one (a crash that left
    only its last log lines, which Kubernetes reports instead)."""
    try:
        return TerminationMessage.model_validate_json(text)
    except ValidationError:
        return None
