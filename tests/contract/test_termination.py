"""The termination message `selfguide stage` leaves where Kubernetes reads it (at most 4096 bytes, always
JSON), and what the operator reads back from it."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from selfguide.contract import termination
from selfguide.contract.environment import TERMINATION_LOG_ENV
from selfguide.contract.results import GenerateResult, TrainResult
from selfguide.contract.termination import MAX_TERMINATION_MESSAGE, TerminationMessage


def written(monkeypatch, tmp_path, message: TerminationMessage) -> str:
    path = tmp_path / "termination-log"
    monkeypatch.setenv(TERMINATION_LOG_ENV, str(path))
    termination.write(message)
    return path.read_text(encoding="utf-8")


def test_a_small_message_is_written_whole_and_reads_back_typed(monkeypatch, tmp_path):
    result = TrainResult(steps=3, final_loss=0.5)
    message = TerminationMessage(stage="train", ok=True, summary=result.model_dump(mode="json", by_alias=True))
    text = written(monkeypatch, tmp_path, message)
    assert "\n" not in text
    assert json.loads(text)["summary"]["finalLoss"] == 0.5
    parsed = termination.parse(text)
    assert parsed == message
    assert parsed.result() == result


def test_a_large_summary_is_dropped_but_the_message_stays_json(monkeypatch, tmp_path):
    message = TerminationMessage(stage="generate", ok=True, summary={"dropped": {f"reason-{i}": i for i in range(1000)}})
    text = written(monkeypatch, tmp_path, message)
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE
    assert json.loads(text) == {"stage": "generate", "ok": True, "skipped": False, "permanent": False}


def test_a_long_error_still_gives_a_json_message(monkeypatch, tmp_path):
    message = TerminationMessage(stage="evaluate", ok=False, permanent=True, error="bad line: " + "x" * 6000)
    text = written(monkeypatch, tmp_path, message)
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE
    parsed = termination.parse(text)
    assert parsed is not None and parsed.stage == "evaluate" and parsed.ok is False and parsed.permanent
    assert parsed.error.startswith("bad line: xxx")


def test_non_ascii_errors_stay_within_the_byte_limit(monkeypatch, tmp_path):
    text = written(monkeypatch, tmp_path, TerminationMessage(stage="generate", ok=False, error="é" * 3000))
    assert len(text.encode()) <= MAX_TERMINATION_MESSAGE


def test_no_file_without_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(TERMINATION_LOG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    termination.write(TerminationMessage(stage="train", ok=True))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text", ["Traceback (most recent call last):\n  ...", "", "[1, 2]", '{"stage": "x"}'])
def test_log_lines_are_not_a_message(text):
    assert termination.parse(text) is None


def test_a_summary_that_breaks_the_result_model_is_an_error_not_silence():
    message = TerminationMessage(stage="generate", ok=True, summary={"examples": -1, "unknownField": 1})
    with pytest.raises(ValidationError):
        message.result()
    assert TerminationMessage(stage="generate", ok=True, summary={"examples": 2}).result() == GenerateResult(examples=2)


def test_values_of_secret_variables_never_reach_the_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_s3cr3t")
    monkeypatch.setenv("OTHER", "visible")
    monkeypatch.setenv("SELFGUIDE_SECRET_ENV", "HF_TOKEN")
    text = written(monkeypatch, tmp_path, TerminationMessage(
        stage="generate", ok=False, error="401 for token hf_s3cr3t (OTHER=visible)"))
    assert "hf_s3cr3t" not in text and json.loads(text)["error"] == "401 for token [redacted] (OTHER=visible)"
