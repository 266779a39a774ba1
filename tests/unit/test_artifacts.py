"""Crash-safe artifacts and the stage runner's "complete for this config" bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from selfguide.artifacts import (
    MANIFEST,
    atomic_dir,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    config_hash,
    read_json,
    read_jsonl,
)
from selfguide.runner import STAGES, completed_manifest, run_stage, stage_config, stage_hash, stages_for
from selfguide.spec import SelfGuideJobSpec
from tests.unit import manifests


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


# -- stage hashes and completion -----------------------------------------------------------------------


def spec(**changes) -> SelfGuideJobSpec:
    data = {"task": manifests.generation()["spec"]["task"]} | changes
    return SelfGuideJobSpec.model_validate(data)


EVALUATION = {"examples": [{"input": "x y", "output": "y x"}]}


def hashes(s: SelfGuideJobSpec) -> dict[str, str]:
    return {stage: stage_hash(s, stage) for stage in STAGES}


def test_same_config_same_hash():
    assert hashes(spec()) == hashes(spec())
    assert hashes(spec(evaluation=EVALUATION)) == hashes(spec(evaluation=dict(reversed(EVALUATION.items()))))
    assert len(set(hashes(spec()).values())) == 3  # each stage has its own hash


def test_training_changes_only_later_stages():
    before, after = hashes(spec()), hashes(spec(training={"epochs": 5}))
    assert after["generate"] == before["generate"]
    assert after["train"] != before["train"]
    assert after["evaluate"] != before["evaluate"]


def test_generation_and_task_change_every_stage():
    base = hashes(spec())
    for changed in (spec(generation={"seed": 1}), spec(model={"name": "org/other-model"})):
        assert all(a != b for a, b in zip(hashes(changed).values(), base.values()))


def test_evaluation_changes_only_the_evaluate_stage():
    before, after = hashes(spec(evaluation=EVALUATION)), hashes(spec(evaluation=EVALUATION | {"maxNewTokens": 9}))
    assert (after["generate"], after["train"]) == (before["generate"], before["train"])
    assert after["evaluate"] != before["evaluate"]


@pytest.mark.parametrize(
    "changes",
    [
        {"pod": {"image": "registry.example/selfguide:2", "nodeSelector": {"gpu": "h100"}}},
        {"stages": {"generate": {"backoffLimit": 4, "resources": {"limits": {"nvidia.com/gpu": "1"}}}}},
        {"suspend": True},
        {"activeDeadlineSeconds": 600, "ttlSecondsAfterFinished": 60},
        {"output": {"claimName": "other-claim"}},
        {"modelCache": {"claimName": "hf-cache"}},
    ],
)
def test_cluster_settings_change_no_hash(changes):
    assert hashes(spec(**changes)) == hashes(spec())


def test_stage_config_holds_only_what_a_stage_depends_on():
    assert set(stage_config(spec(), "generate")) == {"task", "model", "generation"}
    assert set(stage_config(spec(), "train")) == {"task", "model", "generation", "training"}
    assert stage_config(spec(), "evaluate")["evaluation"] is None


def test_stages_for():
    assert stages_for(spec()) == ["generate", "train"]
    assert stages_for(spec(evaluation=EVALUATION)) == ["generate", "train", "evaluate"]


def write_stage_manifest(workdir: Path, stage: str, config: str, summary: dict | None = None) -> None:
    atomic_write_json(workdir / stage / MANIFEST, {"stage": stage, "configHash": config, "summary": summary or {}})


def test_completed_manifest(tmp_path):
    s = spec()
    assert completed_manifest(s, tmp_path, "generate") is None  # never ran
    write_stage_manifest(tmp_path, "generate", "0" * 16)
    assert completed_manifest(s, tmp_path, "generate") is None  # ran with another config
    write_stage_manifest(tmp_path, "generate", stage_hash(s, "generate"), {"examples": 7})
    assert completed_manifest(s, tmp_path, "generate")["summary"] == {"examples": 7}
    assert completed_manifest(spec(training={"epochs": 9}), tmp_path, "generate") is not None
    assert completed_manifest(spec(generation={"seed": 9}), tmp_path, "generate") is None
    (tmp_path / "generate" / MANIFEST).write_text("{not json")
    assert completed_manifest(s, tmp_path, "generate") is None  # a torn manifest is not completion


def test_run_stage_skips_a_stage_complete_for_this_config(tmp_path):
    s = spec()
    write_stage_manifest(tmp_path, "generate", stage_hash(s, "generate"), {"examples": 3})
    (tmp_path / "generate" / "train.jsonl").write_text('{"input": "a", "output": "b"}\n')
    outcome = run_stage(s, tmp_path, "generate")
    assert (outcome.stage, outcome.skipped, outcome.seconds, outcome.summary) == ("generate", True, 0.0, {"examples": 3})
    assert entries(tmp_path / "generate") == [MANIFEST, "train.jsonl"]
    assert json.loads((tmp_path / "generate" / MANIFEST).read_text())["summary"] == {"examples": 3}
