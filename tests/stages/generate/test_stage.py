"""`selfguide stage generate` as a stage pod runs it: real bundled model, tiny budget, crash safety, exit codes."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from selfguide.manifest import load_manifest
from selfguide.runner import current_hash
from tests.stage_runs import read_jsonl, run_cli, sentiment_manifest, staging_dirs, write_manifest

LABELS = {"positive", "negative"}


@pytest.fixture(scope="module")
def run(generated_sentiment):
    result = generated_sentiment.result
    assert result.returncode == 0, result.stderr[-3000:]
    return generated_sentiment


def stdout_summary(result) -> dict:
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines, result.stderr[-2000:]
    return json.loads(lines[-1])


def total_dropped(dropped: dict[str, dict[str, int]]) -> int:
    return sum(n for reasons in dropped.values() for n in reasons.values())


# -- a crash mid-stage -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_crash_mid_stage_leaves_no_stage_directory(run):
    assert run.staging_while_running, "no .generate.* staging directory while the stage ran"
    assert not run.generate_existed_after_kill
    # the SIGKILLed run could not clean up: its staging directory is all that is left
    assert run.staging_after_kill


@pytest.mark.slow
def test_the_rerun_after_a_crash_completes_and_cleans_up(run):
    assert (run.workdir / "generate" / "record.json").is_file()
    assert staging_dirs(run.workdir, "generate") == []
    assert sorted(p.name for p in run.workdir.iterdir() if p.name.startswith(".")) == [".lock"]


# -- outputs --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_stdout_is_a_json_summary(run):
    summary = stdout_summary(run.result)
    assert summary["stage"] == "generate" and summary["skipped"] is False
    report = json.loads((run.workdir / "generate" / "filter_report.json").read_text())
    inner = summary["summary"]
    assert inner["examples"] == report["final"] == len(read_jsonl(run.workdir / "generate" / "train.jsonl"))
    assert inner["candidates"] == report["inputs"]["in"]
    assert inner["generatedTokens"] > 0
    dropped: Counter = Counter()
    for step in ("inputs", "annotation", "balance"):
        for reasons in report.get(step, {}).get("dropped", {}).values():
            dropped.update(reasons)
    assert inner["dropped"] == dict(dropped)


@pytest.mark.slow
def test_training_set_rows_are_input_output_pairs_with_label_outputs(run):
    rows = read_jsonl(run.workdir / "generate" / "train.jsonl")
    assert rows, "the tiny budget kept no example at all"
    for row in rows:
        assert set(row) == {"input", "output"}
        assert isinstance(row["input"], str) and row["input"].strip()
        assert isinstance(row["output"], str) and row["output"].strip()
        assert row["output"] in LABELS
    gold = {e["input"] for e in sentiment_manifest()["spec"]["task"]["examples"]}
    assert not gold & {r["input"] for r in rows}, "a gold input passed the duplicate filter"
    assert len({r["input"] for r in rows}) == len(rows)


@pytest.mark.slow
def test_candidates_match_the_report(run):
    stage_dir = run.workdir / "generate"
    candidates = read_jsonl(stage_dir / "candidates.jsonl")
    report = json.loads((stage_dir / "filter_report.json").read_text())
    assert len(candidates) == report["inputs"]["in"] == 4  # 1 round x 4 prompts x 1 sample
    stages = Counter(c["droppedAt"] for c in candidates)
    assert set(stages) <= {"input", "annotation", "balance", "kept"}
    for step, stage in (("inputs", "input"), ("annotation", "annotation"), ("balance", "balance")):
        per_filter: dict[str, Counter] = {}
        for c in candidates:
            if c["droppedAt"] == stage:
                per_filter.setdefault(c["filter"], Counter())[c["reason"]] += 1
        assert {k: dict(v) for k, v in per_filter.items()} == report[step]["dropped"]
    kept = [{"input": c["input"], "output": c["output"]} for c in candidates if c["droppedAt"] == "kept"]
    assert kept == read_jsonl(stage_dir / "train.jsonl")
    assert all(c.get("pseudoLabel") in LABELS for c in candidates)  # classification: label-conditioned inputs


@pytest.mark.slow
def test_report_adds_up_at_each_step(run):
    report = json.loads((run.workdir / "generate" / "filter_report.json").read_text())
    assert report["prompts"]["built"] == 4 and report["prompts"]["skipped"] == {}
    inputs, annotation, balance = report["inputs"], report["annotation"], report["balance"]
    assert inputs["in"] == inputs["kept"] + total_dropped(inputs["dropped"])
    assert annotation["in"] == inputs["kept"]
    assert annotation["in"] == annotation["kept"] + total_dropped(annotation["dropped"])
    assert balance["in"] == annotation["kept"]
    assert balance["in"] == balance["kept"] + total_dropped(balance["dropped"])
    assert report["final"] == balance["kept"]
    assert set(balance["before"]) == set(balance["after"]) == LABELS
    assert sum(balance["before"].values()) == balance["in"]
    assert sum(balance["after"].values()) == balance["kept"]
    present = [n for label, n in balance["after"].items() if balance["before"][label]]
    assert len(set(present)) <= 1, "classes are not balanced"
    assert balance["missingLabels"] == sorted(
        (label for label, n in balance["before"].items() if n == 0), key=["positive", "negative"].index)


@pytest.mark.slow
def test_stage_manifest_records_the_config_hash(run):
    manifest = json.loads((run.workdir / "generate" / "record.json").read_text())
    spec = load_manifest(run.spec_file).spec
    assert manifest["stage"] == "generate"
    assert manifest["configHash"] == current_hash(spec, run.workdir, "generate") and manifest["upstream"] == {}
    assert len(manifest["configHash"]) == 16
    assert manifest["seconds"] > 0
    assert manifest["summary"] == stdout_summary(run.result)["summary"]
    assert json.loads((run.workdir / "spec.json").read_text()) == spec.to_camel_dict()


@pytest.mark.slow
def test_termination_message_reports_success(run):
    message = json.loads(run.termination_log.read_text())
    assert message["stage"] == "generate" and message["ok"] is True and message["skipped"] is False
    assert message["summary"] == stdout_summary(run.result)["summary"]


@pytest.mark.slow
def test_a_rerun_with_the_same_config_is_skipped(run, tmp_path):
    stage_dir = run.workdir / "generate"
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in stage_dir.iterdir()}
    termination = tmp_path / "termination-log"
    started = time.monotonic()
    result = run_cli("stage", "generate", "--spec", run.spec_file, "--workdir", run.workdir,
                     SELFGUIDE_TERMINATION_LOG=str(termination))
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    summary = stdout_summary(result)
    assert summary["skipped"] is True
    assert summary["summary"] == stdout_summary(run.result)["summary"]
    assert json.loads(termination.read_text())["skipped"] is True
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in stage_dir.iterdir()} == before
    assert seconds < min(20.0, run.seconds / 2), f"a skipped stage took {seconds:.1f}s"


# -- failures -------------------------------------------------------------------------------------------


def test_an_invalid_manifest_exits_2_with_field_paths(tmp_path):
    manifest = sentiment_manifest(training={"epochs": 0})
    manifest["spec"]["generation"]["annotation"] = {"samples": 2, "keep": 3}
    spec_file = write_manifest(tmp_path / "bad.yaml", manifest)
    termination = tmp_path / "termination-log"
    result = run_cli("stage", "generate", "--spec", spec_file, "--workdir", tmp_path / "work", timeout=120,
                     SELFGUIDE_TERMINATION_LOG=str(termination))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "spec.generation.annotation.keep: must not exceed samples" in lines
    assert any(line.startswith("spec.training.epochs: ") for line in lines)
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_a_missing_local_model_is_a_permanent_failure(tmp_path):
    spec_file = write_manifest(tmp_path / "job.yaml", sentiment_manifest(model={"name": "/nonexistent/model"}))
    termination = tmp_path / "termination-log"
    workdir = tmp_path / "work"
    result = run_cli("stage", "generate", "--spec", spec_file, "--workdir", workdir, timeout=300,
                     SELFGUIDE_TERMINATION_LOG=str(termination))
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "/nonexistent/model" in result.stderr
    message = json.loads(termination.read_text())
    assert message["stage"] == "generate" and message["ok"] is False and message["permanent"] is True
    assert "/nonexistent/model" in message["error"]
    assert not (workdir / "generate").exists() and staging_dirs(workdir, "generate") == []
