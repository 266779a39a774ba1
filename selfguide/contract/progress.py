"""Live progress inside a stage: one model, one tracker, several sinks.

A stage (and the engine under it) reports through `current()`: rounds, inputs generated and annotated
(generate), steps and loss (train), items scored (evaluate). The tracker turns that into a `StageProgress`
(percentage, ETA) and hands every snapshot to its sinks: the local CLI's progress bar (`selfguide run`), and in
a stage pod an `HttpReporter` that sends the latest snapshot to the operator every few seconds. The operator
copies it into the stage's `status.stages[].progress`, so status and the CLI show the same numbers.

Sinks never block a stage: the HTTP reporter only stores the snapshot; a daemon thread sends it, with a short
timeout, and drops what it cannot deliver (the next report carries the latest numbers again).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from selfguide.spec.base import SpecModel

log = logging.getLogger(__name__)

PROGRESS_URL_ENV = "SELFGUIDE_PROGRESS_URL"
"""The operator's progress endpoint (set by the operator on stage pods; unset: no reports are sent)."""
PROGRESS_TOKEN_ENV = "SELFGUIDE_PROGRESS_TOKEN_FILE"
"""A projected service-account token with audience `PROGRESS_AUDIENCE`, sent as the bearer token."""
PROGRESS_SECONDS_ENV = "SELFGUIDE_PROGRESS_SECONDS"
"""Seconds between reports (default 10)."""
PROGRESS_AUDIENCE = "selfguide.dev/progress"
"""The audience of the stage pods' progress token: the API server refuses it (it is not the API's audience), so
it can do nothing but report progress to the operator, which checks it with a TokenReview."""
DEFAULT_INTERVAL = 10.0
Count = Annotated[int, Field(ge=0, le=2**53)]
Seconds = Annotated[float, Field(ge=0, le=1e9)]


class StageProgress(SpecModel):
    """How far a running stage got. Which counters are set depends on the stage."""

    percent: Annotated[float, Field(ge=0, le=100)] = 0.0
    eta_seconds: Seconds | None = None
    """Estimated seconds left (elapsed time scaled by the work left); unknown until some work is done."""
    elapsed_seconds: Seconds = 0.0
    rounds_done: Count | None = None
    """generate: input-generation rounds done, of `rounds_total`."""
    rounds_total: Count | None = None
    inputs_generated: Count | None = None
    """generate: candidate inputs generated so far."""
    inputs_annotated: Count | None = None
    """generate: candidates annotated so far, of `inputs_total`."""
    inputs_total: Count | None = None
    step: Count | None = None
    """train: optimizer steps done, of `steps_total`."""
    steps_total: Count | None = None
    loss: Annotated[float | None, Field(ge=-1e9, le=1e9)] = None
    """train: the loss of the last logged step."""
    items_scored: Count | None = None
    """evaluate: predictions made, of `items_total` (evaluation examples x compared systems)."""
    items_total: Count | None = None
    updated_at: datetime | None = None

    def counters(self) -> set[str]:
        """The stage counters set in this report (each stage declares its own: `StageDefinition`)."""
        return {name for name, value in self if value is not None and name not in _COMMON}

    def line(self) -> str:
        parts = []
        if self.rounds_total:
            parts.append(f"round {self.rounds_done or 0}/{self.rounds_total}")
        if self.inputs_generated is not None:
            parts.append(f"{self.inputs_generated} inputs")
        if self.inputs_total:
            parts.append(f"{self.inputs_annotated or 0}/{self.inputs_total} annotated")
        if self.steps_total:
            parts.append(f"step {self.step or 0}/{self.steps_total}")
        if self.loss is not None:
            parts.append(f"loss {self.loss:.3f}")
        if self.items_total:
            parts.append(f"{self.items_scored or 0}/{self.items_total} scored")
        eta = "" if self.eta_seconds is None else f", ETA {_duration(self.eta_seconds)}"
        return f"{self.percent:.0f}%" + (f" ({', '.join(parts)})" if parts else "") + eta


_COMMON = frozenset({"percent", "eta_seconds", "elapsed_seconds", "updated_at"})
"""The fields every stage reports."""


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


Sink = Callable[[StageProgress], None]


class ProgressTracker:
    """The progress of one stage run; `update` is cheap and thread-safe, sinks see every snapshot."""

    def __init__(self, stage: str, sinks: Sequence[Sink] = (), clock: Callable[[], float] = time.monotonic) -> None:
        self.stage = stage
        self.sinks = list(sinks)
        self.clock = clock
        self.started = clock()
        self.snapshot = StageProgress()
        self._lock = threading.Lock()

    def update(self, fraction: float | None = None, **counters: Any) -> StageProgress:
        """Record counters (StageProgress field names) and, when known, the fraction of the stage done."""
        with self._lock:
            elapsed = max(0.0, self.clock() - self.started)
            values: dict[str, Any] = {**counters, "elapsed_seconds": round(elapsed, 1),
                                      "updated_at": datetime.now(UTC).replace(microsecond=0)}
            if fraction is not None:
                fraction = min(1.0, max(0.0, fraction))
                values["percent"] = round(100 * fraction, 1)
                values["eta_seconds"] = round(elapsed * (1 - fraction) / fraction, 1) if fraction > 0 else None
            self.snapshot = self.snapshot.model_copy(update=values)
            snapshot = self.snapshot
        for sink in self.sinks:
            try:
                sink(snapshot)
            except Exception:  # a sink never breaks a stage
                log.debug("progress sink failed", exc_info=True)
        return snapshot

    def finish(self) -> StageProgress:
        return self.update(1.0)


PROGRESS_REPORTS = 20
PROGRESS_CHUNK = 16


def chunks(total: int) -> Iterator[slice]:
    """Work on `total` items split into about PROGRESS_REPORTS calls of at least PROGRESS_CHUNK items, so that
    progress moves while it runs (a backend call reports nothing until it returns)."""
    size = max(PROGRESS_CHUNK, math.ceil(total / PROGRESS_REPORTS))
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


_current: ProgressTracker | None = None


def current() -> ProgressTracker:
    """The tracker of the stage running in this process (one that reports nowhere outside `tracking`)."""
    return _current if _current is not None else ProgressTracker("none")


@contextlib.contextmanager
def tracking(tracker: ProgressTracker) -> Iterator[ProgressTracker]:
    """Make `tracker` the current one while a stage runs."""
    global _current
    previous, _current = _current, tracker
    try:
        yield tracker
    finally:
        _current = previous


def report_path(namespace: str, job: str, stage: str) -> str:
    """The operator's endpoint for one stage's reports, below the progress URL."""
    return f"/v1/namespaces/{namespace}/selfguidejobs/{job}/stages/{stage}/progress"


class HttpReporter:
    """Sends the latest snapshot to the operator every `interval` seconds from a daemon thread."""

    def __init__(self, url: str, token_file: Path | None, interval: float = DEFAULT_INTERVAL,
                 timeout: float = 5.0) -> None:
        self.url = url
        self.token_file = token_file
        self.interval = interval
        self.timeout = timeout
        self._latest: StageProgress | None = None
        self._sent: StageProgress | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress-reporter", daemon=True)
        self._thread.start()
        self._warned = False

    def __call__(self, snapshot: StageProgress) -> None:
        self._latest = snapshot
        if snapshot.percent >= 100:
            self._wake.set()

    def close(self) -> None:
        """Send the last snapshot (best effort) and stop."""
        self._stop.set()
        self._wake.set()
        self._thread.join(self.timeout + 1)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.send()
            if self._stop.is_set():
                self.send()
                return

    def send(self) -> bool:
        snapshot = self._latest
        if snapshot is None or snapshot is self._sent:
            return True
        headers = {"Content-Type": "application/json"}
        try:
            if self.token_file is not None:
                headers["Authorization"] = "Bearer " + self.token_file.read_text(encoding="utf-8").strip()
            body = json.dumps(snapshot.model_dump(mode="json", by_alias=True, exclude_none=True)).encode()
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=self.timeout):
                pass
        except (OSError, urllib.error.URLError, ValueError) as error:
            if not self._warned:  # once: an unreachable operator is not the stage's problem
                log.warning("cannot report progress to %s: %s", self.url, error)
                self._warned = True
            return False
        self._sent = snapshot
        return True


def reporter_from_environment(namespace: str, job: str, stage: str) -> HttpReporter | None:
    """The HTTP reporter a stage pod uses (None outside the cluster, or when the operator asks for none)."""
    url = os.environ.get(PROGRESS_URL_ENV)
    if not url:
        return None
    token = os.environ.get(PROGRESS_TOKEN_ENV)
    interval = float(os.environ.get(PROGRESS_SECONDS_ENV) or DEFAULT_INTERVAL)
    return HttpReporter(url.rstrip("/") + report_path(namespace, job, stage), Path(token) if token else None,
                        interval)
