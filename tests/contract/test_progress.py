"""The progress tracker and its HTTP reporter: percentages and ETAs from the stage's counters, sinks that never
break or block a stage, and an unreachable operator that costs the stage nothing."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from selfguide.contract.progress import HttpReporter, ProgressTracker, StageProgress, current, tracking
from tests.harness.controlplane import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_percent_and_eta_follow_the_fraction_done():
    clock, seen = Clock(), []
    tracker = ProgressTracker("train", [seen.append], clock=clock)
    tracker.update(0.0, step=0, steps_total=40)
    clock.now += 30
    snapshot = tracker.update(0.25, step=10)
    assert (snapshot.percent, snapshot.eta_seconds, snapshot.elapsed_seconds) == (25.0, 90.0, 30.0)
    assert snapshot.step == 10 and snapshot.steps_total == 40  # counters accumulate
    tracker.update(loss=1.5)  # counters alone keep the percentage
    assert tracker.snapshot.percent == 25.0 and tracker.snapshot.loss == 1.5
    assert tracker.finish().percent == 100 and tracker.snapshot.eta_seconds == 0
    assert [s.percent for s in seen] == [0.0, 25.0, 25.0, 100.0]
    assert "25% (step 10/40, loss 1.500), ETA 1m30s" == seen[2].line()


def test_a_failing_sink_never_breaks_the_stage_and_current_is_scoped():
    def broken(_: StageProgress) -> None:
        raise RuntimeError("sink down")

    tracker = ProgressTracker("evaluate", [broken])
    with tracking(tracker):
        assert current() is tracker
        current().update(0.5, items_scored=1, items_total=2)
    assert current() is not tracker and tracker.snapshot.percent == 50


def test_an_unreachable_operator_never_blocks_the_stage():
    reporter = HttpReporter(f"http://127.0.0.1:{free_port()}/progress", None, interval=0.05, timeout=0.5)
    started = time.monotonic()
    tracker = ProgressTracker("generate", [reporter])
    for i in range(200):
        tracker.update(i / 200)
    assert time.monotonic() - started < 0.5  # updates only store the snapshot
    reporter.close()


def test_the_reporter_sends_the_latest_snapshot_with_the_token(tmp_path: Path):
    received: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.headers["Authorization"], json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    token = tmp_path / "token"
    token.write_text("tok-1\n")
    reporter = HttpReporter(f"http://127.0.0.1:{server.server_port}/p", token, interval=60)
    tracker = ProgressTracker("train", [reporter])
    tracker.update(0.1, step=1)
    tracker.update(0.2, step=2)
    token.write_text("tok-2")  # a rotated token is read again
    tracker.finish()  # 100% is sent at once, not after the interval
    reporter.close()
    server.shutdown()
    assert received and received[-1][0] == "Bearer tok-2" and received[-1][1]["percent"] == 100
    assert all(r[1]["step"] == 2 for r in received)  # only the latest snapshot goes out
