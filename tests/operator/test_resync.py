"""Which SelfGuideJobs the safety-net timer keeps reconciling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from selfguide_operator.handlers import TTL_GRACE_SECONDS, _needs_resync


@pytest.mark.parametrize(("phase", "finished_ago", "ttl", "expected"), [
    (None, None, None, True),
    ("Running", None, None, True),
    ("Succeeded", 5, None, False),
    ("Failed", 5, 60, True),
    ("Succeeded", 60 + TTL_GRACE_SECONDS + 5, 60, False),
])
def test_finished_jobs_stop_being_resynced_once_their_ttl_has_passed(phase, finished_ago, ttl, expected) -> None:
    status = {"phase": phase} if phase else {}
    if finished_ago is not None:
        finished = datetime.now(UTC) - timedelta(seconds=finished_ago)
        status["completionTime"] = finished.isoformat().replace("+00:00", "Z")
    spec = {"ttlSecondsAfterFinished": ttl} if ttl is not None else {}
    assert _needs_resync(status=status, spec=spec) is expected
