"""Crash-safe artifacts: files and directories appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfguide.artifacts import (
    atomic_dir,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    config_hash,
    read_json,
    read_jsonl,
)


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- atomic files --------------------------------------------------------------------------------------


def test_atomic_writes_leave_only_the_target(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "hello\n")
    atomic_write_json(tmp_path / "sub" / "b.json", {"x": [1, "é"]})
    atomic_write_jsonl(tmp_path / "c.jsonl", ({"i": i} for i in range(3)))
    assert entries(tmp_path) == ["a.txt", "c.jsonl", "sub"]
    assert entries(tmp_path / "sub") == ["b.json"]
    assert (tmp_path / "a.txt").read_text() == "hello\n"
    assert read_json(tmp_path / "sub" / "b.json") == {"x": [1, "é"]}
    assert "é" in (tmp_path / "sub" / "b.json").read_text(encoding="utf-8")
    assert read_jsonl(tmp_path / "c.jsonl") == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_atomic_write_replaces_existing_content(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert entries(tmp_path) == ["a.txt"]


def test_failed_write_keeps_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, "half \ud800 written")  # a lone surrogate cannot be encoded
    assert path.read_text() == "old"
    assert entries(tmp_path) == ["a.txt"]


def test_empty_jsonl_and_blank_lines(tmp_path):
    atomic_write_jsonl(tmp_path / "e.jsonl", [])
    assert read_jsonl(tmp_path / "e.jsonl") == []
    (tmp_path / "f.jsonl").write_text('{"a": 1}\n\n  \n{"a": 2}\n')
    assert read_jsonl(tmp_path / "f.jsonl") == [{"a": 1}, {"a": 2}]


def test_config_hash_is_stable_and_order_independent():
    a = config_hash({"x": 1, "y": {"b": 2, "a": [1, 2]}})
    assert a == config_hash({"y": {"a": [1, 2], "b": 2}, "x": 1})
    assert a != config_hash({"x": 1, "y": {"b": 2, "a": [2, 1]}})
    assert len(a) == 16 and int(a, 16) >= 0


# -- atomic directories --------------------------------------------------------------------------------


def test_atomic_dir_creates_the_target(tmp_path):
    target = tmp_path / "work" / "generate"
    with atomic_dir(target) as staging:
        assert staging.is_dir() and entries(staging) == []
        assert staging.parent == target.parent and staging.name.startswith(".generate.")
        assert not target.exists()
        (staging / "train.jsonl").write_text("{}\n")
    assert entries(target) == ["train.jsonl"]
    assert entries(target.parent) == ["generate"]


def test_atomic_dir_replaces_an_existing_target(tmp_path):
    target = tmp_path / "generate"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with atomic_dir(target) as staging:
        (staging / "fresh.txt").write_text("new")
        assert (target / "stale.txt").exists()  # the old output stays until the new one is complete
    assert entries(target) == ["fresh.txt"]
    assert entries(tmp_path) == ["generate"]


def test_failure_inside_keeps_the_old_target(tmp_path):
    target = tmp_path / "generate"
    target.mkdir()
    (target / "result.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(target) as staging:
        (staging / "result.txt").write_text("half")
        raise RuntimeError("boom")
    assert (target / "result.txt").read_text() == "old"
    assert entries(tmp_path) == ["generate"]


def test_leftovers_of_a_crash_are_removed_by_the_next_run(tmp_path):
    target = tmp_path / "generate"
    crashed = tmp_path / ".generate.abc123"  # a staging dir of a killed process
    crashed.mkdir()
    (crashed / "partial").write_text("x")
    old = tmp_path / ".generate.old"  # killed between the two renames
    old.mkdir()
    other = tmp_path / ".train.xyz"  # another stage's staging dir is not ours to remove
    other.mkdir()
    with atomic_dir(target) as staging:
        assert not crashed.exists() and not old.exists()
        (staging / "ok").write_text("1")
    assert entries(tmp_path) == [".train.xyz", "generate"]
