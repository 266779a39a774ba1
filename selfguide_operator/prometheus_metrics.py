"""Prometheus metrics of the operator, served on their own port (`--metrics-port`)."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from selfguide.contract.status import Phase, SelfGuideJobStatus
from selfguide_operator.status import TERMINAL

STAGE_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)


class Metrics:
    """Jobs per phase, stage durations, reconcile errors and reconcile latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge("selfguide_jobs", "SelfGuideJobs by phase.", ["phase"], registry=self.registry)
        self.stage_duration = Histogram("selfguide_stage_duration_seconds",
                                        "Run time of finished stage Jobs.", ["stage", "result"],
                                        buckets=STAGE_BUCKETS, registry=self.registry)
        self.reconcile_errors = Counter("selfguide_reconcile_errors", "Reconciles that raised an error.",
                                        registry=self.registry)
        self.reconcile_duration = Histogram("selfguide_reconcile_duration_seconds",
                                            "Time to plan and apply one reconcile.", registry=self.registry)
        self._phases: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        for phase in Phase:
            self.jobs.labels(phase.value)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, address, registry=self.registry)

    def record(self, key: tuple[str, str], old: SelfGuideJobStatus, new: SelfGuideJobStatus) -> None:
        """Account for one SelfGuideJob's new status: its phase, and the stages that just finished."""
        before = {s.name: s.phase for s in old.stages}
        for stage in new.stages:
            if stage.phase in TERMINAL and before.get(stage.name) != stage.phase and stage.start_time \
                    and stage.completion_time:
                seconds = (stage.completion_time - stage.start_time).total_seconds()
                self.stage_duration.labels(stage.name, stage.phase.value).observe(seconds)
        phase = (new.phase or Phase.PENDING).value
        with self._lock:
            previous = self._phases.get(key)
            if previous != phase:
                self._phases[key] = phase
                if previous is not None:
                    self.jobs.labels(previous).dec()
                self.jobs.labels(phase).inc()

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            previous = self._phases.pop(key, None)
            if previous is not None:
                self.jobs.labels(previous).dec()
