"""The one-line JSON outcome `selfguide stage` leaves where Kubernetes reads a container's termination message
(at most 4096 bytes; the operator parses it as JSON)."""

from __future__ import annotations

import json

from selfguide.cli import MAX_TERMINATION_MESSAGE, TERMINATION_LOG_ENV, write_termination_message


def written(monkeypatch, tmp_path, outcome) -> str:
    path = tmp_path / "termination-log"
    monkeypatch.setenv(TERMINATION_LOG_ENV, str(path))
    write_termination_message(outcome)
    return path.read_text(encoding="utf-8")


def test_a_small_outcome_is_written_whole(monkeypatch, tmp_path):
    outcome = {"stage": "train", "ok": True, "skipped": False, "summary": {"steps": 3, "finalLoss": 0.5}}
    text = written(monkeypatch, tmp_path, outcome)
    assert json.loads(text) == outcome
    assert "\n" not in text


def test_a_large_summary_is_dropped_but_the_message_stays_json(monkeypatch, tmp_path):
    outcome = {"stage": "generate", "ok": True, "skipped": False,
               "summary": {"dropped": {f"reason-{i}": i for i in range(1000)}}}
    text = written(monkeypatch, tmp_path, outcome)
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE
    assert json.loads(text) == {"stage": "generate", "ok": True, "skipped": False}


def test_a_long_error_still_gives_a_json_message(monkeypatch, tmp_path):
    """Fails while the fallback slices the JSON text at 4096 characters (selfguide/cli.py, the
    `json.dumps(...)[:MAX_TERMINATION_MESSAGE]` line): the closing quote and brace are cut off, so the
    operator can no longer parse it and shows the raw text as the error."""
    outcome = {"stage": "evaluate", "ok": False, "permanent": True, "error": "bad line: " + "x" * 6000}
    text = written(monkeypatch, tmp_path, outcome)
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE
    message = json.loads(text)
    assert message["stage"] == "evaluate" and message["ok"] is False
    assert message["error"].startswith("bad line: xxx")


def test_non_ascii_errors_stay_within_the_byte_limit(monkeypatch, tmp_path):
    outcome = {"stage": "generate", "ok": False, "permanent": False, "error": "é" * 3000}
    text = written(monkeypatch, tmp_path, outcome)
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE


def test_no_file_without_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(TERMINATION_LOG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    write_termination_message({"stage": "train", "ok": True})
    assert list(tmp_path.iterdir()) == []
