"""Where kopf keeps its state on a SelfGuideJob (annotations), read so that a job's owner cannot wedge it.

Whoever may edit a SelfGuideJob may edit its annotations, kopf's included. kopf decodes them with `json.loads`
and fails on anything else, on every event, for good: the finalizer is never removed and `kubectl delete` hangs.
Here an annotation that is not a JSON object reads as absent: kopf runs the (idempotent) reconcile again and
writes a fresh one."""

from __future__ import annotations

import logging
from typing import Any, cast

import iso8601
import kopf

log = logging.getLogger(__name__)


UNREADABLE = "unreadable"


def _object_or_none(value: Any, what: str, body: kopf.Body) -> Any:
    """`value` where it is a JSON object (or absent), else None (logged, without the text)."""
    if value is not None and not isinstance(value, dict):
        meta = body.get("metadata", {})
        log.warning("%s/%s: kopf's %s annotation is not one kopf can read; ignored, a fresh one will be written",
                    meta.get("namespace"), meta.get("name"), what)
        return None
    return value


def progress_record_readable(record: dict[str, Any]) -> bool:
    """Whether kopf can read `record` (`HandlerState.from_storage`): ISO 8601 times, an integer retry count,
    boolean outcomes, text or nothing for the rest."""
    try:
        for key in ("started", "stopped", "delayed"):
            if record.get(key) is not None:
                iso8601.parse_date(record[key], default_timezone=None)
    except (ValueError, TypeError, AttributeError):
        return False
    retries, subrefs = record.get("retries") or 0, record.get("subrefs") or []
    return (isinstance(retries, int) and not isinstance(retries, bool)
            and all(isinstance(record.get(k) or False, bool) for k in ("success", "failure"))
            and all(isinstance(record.get(k) or "", str) for k in ("purpose", "message"))
            and isinstance(subrefs, list) and all(isinstance(s, str) for s in subrefs))


class TolerantProgressStorage(kopf.AnnotationsProgressStorage):
    """kopf's progress annotations; one that kopf could not read (not a JSON object, or a field of the wrong
    kind: a time that is not ISO 8601, a retry count that is not an integer, ...) reads as no progress."""

    def fetch(self, *, key: Any, body: kopf.Body) -> kopf.ProgressRecord | None:
        try:
            value: Any = super().fetch(key=key, body=body)
        except ValueError:  # not JSON at all
            value = UNREADABLE
        if isinstance(value, dict) and not progress_record_readable(value):
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
