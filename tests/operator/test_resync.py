"""Which SelfGuideJobs the safety-net timer keeps reconciling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from selfguide_operator.handlers import TTL_GRACE_SECONDS, _needs_resync


def _ago(seconds: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(("status", "spec", "expected"), [
    ({}, {}, True),
    ({"phase": "Running"}, {}, True),
    ({"phase": "Succeeded", "completionTime": _ago(5)}, {}, False),
    ({"phase": "Failed", "completionTime": _ago(5)}, {"ttlSecondsAfterFinished": 60}, True),
    ({"phase": "Succeeded", "completionTime": _ago(60 + TTL_GRACE_SECONDS + 5)}, {"ttlSecondsAfterFinished": 60},
     False),
])
def test_finished_jobs_stop_being_resynced_once_their_ttl_has_passed(status, spec, expected) -> None:
    assert _needs_resync(status=status, spec=spec) is expected
