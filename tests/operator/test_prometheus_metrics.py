"""The operator's Prometheus metrics: jobs per phase follow every status change and deletion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from selfguide.contract.status import Phase, SelfGuideJobStatus, StageStatus
from selfguide_operator.prometheus_metrics import Metrics

START = datetime(2026, 1, 1, tzinfo=UTC)


def jobs(metrics: Metrics) -> dict[str, float]:
    values = {p.value: metrics.registry.get_sample_value("selfguide_jobs", {"phase": p.value}) for p in Phase}
    return {phase: value for phase, value in values.items() if value}


def status(phase: Phase | None, **stages: Phase) -> SelfGuideJobStatus:
    return SelfGuideJobStatus(phase=phase, stages=[
        StageStatus(name=name, phase=p, start_time=START, completion_time=START + timedelta(seconds=42))
        for name, p in stages.items()])


def test_jobs_per_phase_follow_status_changes_and_deletions():
    metrics = Metrics()
    empty = SelfGuideJobStatus()
    metrics.record(("ns", "a"), empty, status(None))
    metrics.record(("ns", "b"), empty, status(Phase.RUNNING))
    assert jobs(metrics) == {"Pending": 1, "Running": 1}
    metrics.record(("ns", "a"), status(None), status(Phase.RUNNING))
    metrics.record(("ns", "a"), status(Phase.RUNNING), status(Phase.RUNNING))  # no change, no count
    assert jobs(metrics) == {"Running": 2}
    metrics.record(("ns", "b"), status(Phase.RUNNING), status(Phase.FAILED))
    metrics.forget(("ns", "a"))
    metrics.forget(("ns", "a"))  # a second deletion event changes nothing
    assert jobs(metrics) == {"Failed": 1}


def test_a_stage_duration_is_observed_once_when_the_stage_finishes():
    metrics = Metrics()
    running = status(Phase.RUNNING, generate=Phase.SUCCEEDED)
    metrics.record(("ns", "a"), status(Phase.RUNNING), running)
    metrics.record(("ns", "a"), running, running)
    labels = {"stage": "generate", "result": "Succeeded"}
    assert metrics.registry.get_sample_value("selfguide_stage_duration_seconds_count", labels) == 1
    assert metrics.registry.get_sample_value("selfguide_stage_duration_seconds_sum", labels) == 42
