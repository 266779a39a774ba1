"""Where kopf keeps its state on a SelfGuideJob (annotations), read so that a job's owner cannot wedge it.

Whoever may edit a SelfGuideJob may edit its annotations, kopf's included. kopf decodes them with `json.loads`
and fails on anything else, on every event, for good: the finalizer is never removed and `kubectl delete` hangs.
Here an annotation that is not a JSON object reads as absent: kopf runs the (idempotent) reconcile again and
writes a fresh one."""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

log = logging.getLogger(__name__)


UNREADABLE = "unreadable"


def _object_or_none(value: Any, what: str, body: kopf.Body) -> Any:
    """`value` where it is a JSON object (or absent), else None (logged, without the text)."""
    if value is not None and not isinstance(value, dict):
        meta = body.get("metadata", {})
        log.warning("%s/%s: kopf's %s annotation is not a JSON object; ignored, a fresh one will be written",
                    meta.get("namespace"), meta.get("name"), what)
        return None
    return value


class TolerantProgressStorage(kopf.AnnotationsProgressStorage):
    """kopf's progress annotations; one that is not a JSON object reads as no progress."""

    def fetch(self, *, key: Any, body: kopf.Body) -> kopf.ProgressRecord | None:
        try:
            value: Any = super().fetch(key=key, body=body)
        except ValueError:  # not JSON at all
            value = UNREADABLE
        return cast(kopf.ProgressRecord | None, _object_or_none(value, "progress", body))


class TolerantDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled-configuration annotation; one that is not a JSON object reads as none."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        try:
            value: Any = super().fetch(body=body)
        except ValueError:
            value = UNREADABLE
        return cast(kopf.BodyEssence | None, _object_or_none(value, "last-handled-configuration", body))
