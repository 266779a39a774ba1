"""`selfguide run` end to end with a tiny budget, and the evaluate stage's report, plots and evaluation files.

The generate stage is not run again here: the work directory starts from the shared generate run of the
same task and generation settings (tests/engine/conftest.py), so `run` finds it complete and skips it."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from selfguide.contract.intervals import paired_interval
from selfguide.stages.evaluate.scoring import exact_match, mean
from tests.stage_runs import read_jsonl, run_cli, sentiment_manifest, write_manifest

EVAL = [
    {"input": "Absolutely love it, works perfectly.", "output": "positive"},
    {"input": "Stopped working within a week. Waste of money.", "output": "negative"},
    {"input": "Cheap plastic, it cracked the first time I used it.", "output": "negative"},
]
TRAINING = {"epochs": 2, "batchSize": 4, "maxLength": 64}
SYSTEMS = {"fewShotPrompting", "selfGuide"}


def run_manifest(evaluation: dict) -> dict:
    return sentiment_manifest(evaluation={"maxNewTokens": 4, "batchSize": 8, **evaluation}, training=TRAINING)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG file"
    assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND", f"{path.name} is truncated"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def completed_run(generated_sentiment, tmp_path_factory):
    assert generated_sentiment.result.returncode == 0, generated_sentiment.result.stderr[-3000:]
    root = tmp_path_factory.mktemp("run")
    workdir = root / "work"
    workdir.mkdir()
    shutil.copytree(generated_sentiment.workdir / "generate", workdir / "generate")
    spec_file = write_manifest(root / "job.yaml", run_manifest({"examples": EVAL}))
    result = run_cli("run", spec_file, "--workdir", workdir)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return workdir, result


@pytest.mark.slow
def test_run_skips_the_complete_generate_stage_and_runs_the_rest(completed_run):
    workdir, result = completed_run
    lines = result.stdout.splitlines()
    assert any(line.split()[:1] == ["generate"] and "already complete" in line for line in lines), result.stdout
    assert any(line.split()[:1] == ["train"] and "already complete" not in line for line in lines)
    assert any(line.split()[:1] == ["evaluate"] and "SELF-GUIDE" in line for line in lines)
    for stage in ("generate", "train", "evaluate"):
        assert (workdir / stage / "record.json").is_file()
    assert not [p.name for p in workdir.iterdir() if p.name.startswith(".") and p.name not in (".checkpoints", ".lock")]


@pytest.mark.slow
def test_report_compares_both_systems_per_example(completed_run):
    workdir, _ = completed_run
    report = json.loads((workdir / "evaluate" / "report.json").read_text())
    assert report["metric"] == "exact_match"
    assert report["examples"] == 3
    assert set(report["scores"]) == SYSTEMS
    assert report["baseline"] == report["scores"]["fewShotPrompting"]
    assert report["finetuned"] == report["scores"]["selfGuide"]
    assert report["delta"] == pytest.approx(round(report["finetuned"] - report["baseline"], 2), abs=1e-9)
    rows = report["predictions"]
    assert [(r["input"], r["gold"]) for r in rows] == [(e["input"], e["output"]) for e in EVAL]
    labels = {"positive", "negative"}
    for system in SYSTEMS:
        scores = []
        for row in rows:
            answer, score = row[system]["answer"], row[system]["score"]
            assert isinstance(answer, str)
            assert score == exact_match(answer, row["gold"], labels)  # recomputed independently
            scores.append(score)
        assert report["scores"][system] == pytest.approx(round(mean(scores), 2))
    stage = json.loads((workdir / "evaluate" / "record.json").read_text())["summary"]
    assert stage["delta"] == report["delta"] and stage["scores"] == report["scores"]
    differences = [r["selfGuide"]["score"] - r["fewShotPrompting"]["score"] for r in rows]
    low, high = stage["interval"]  # the paired interval, recomputed from the per-item scores
    assert [low, high] == [round(v, 2) for v in paired_interval(differences, 0.95)] and low <= stage["delta"] <= high


@pytest.mark.slow
def test_readable_report_and_plots(completed_run):
    workdir, _ = completed_run
    out = workdir / "evaluate"
    report = json.loads((out / "report.json").read_text())
    text = (out / "report.md").read_text()
    assert text.startswith("# SELF-GUIDE evaluation report")
    assert f"{report['delta']:+.2f}" in text
    assert all(e["input"] in text for e in EVAL)
    for name in ("scores.png", "lengths.png", "funnel.png"):
        width, height = png_size(out / name)
        assert width > 100 and height > 100
        assert f"]({name})" in text


@pytest.mark.slow
def test_evaluation_from_a_jsonl_file(completed_run, tmp_path):
    done, _ = completed_run
    workdir = tmp_path / "work"
    shutil.copytree(done, workdir, symlinks=True)
    rows = [{"input": "Fast delivery and the quality exceeded my expectations.", "output": "positive"},
            {"input": "The sound is muffled and the app keeps crashing.", "output": "negative"},
            {"input": "Comfortable, stylish and the battery is excellent.", "output": "positive"}]
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("\n".join(json.dumps(r) for r in rows[:1]) + "\n\n"
                         + "\n".join(json.dumps(r) for r in rows[1:]) + "\n")
    spec_file = write_manifest(tmp_path / "job.yaml", run_manifest({"path": str(eval_file), "maxExamples": 2}))
    train_manifest = (workdir / "train" / "record.json").read_bytes()
    result = run_cli("run", spec_file, "--workdir", workdir)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    # only the evaluation changed: generate and train are complete for this config
    assert sum("already complete" in line for line in result.stdout.splitlines()) == 2, result.stdout
    assert (workdir / "train" / "record.json").read_bytes() == train_manifest
    report = json.loads((workdir / "evaluate" / "report.json").read_text())
    assert report["examples"] == 2  # maxExamples: the first two (the blank line is no example)
    assert [(r["input"], r["gold"]) for r in report["predictions"]] == [(r["input"], r["output"]) for r in rows[:2]]


BALANCED = [*EVAL, {"input": "Fast delivery and the quality exceeded my expectations.", "output": "positive"},
            {"input": "The sound is muffled and the app keeps crashing.", "output": "negative"},
            {"input": "Comfortable, stylish and the battery is excellent.", "output": "positive"}]


@pytest.mark.slow
@pytest.mark.parametrize("calibration", ["none", "batch"])
def test_rank_classification_answers_with_a_label_for_both_systems(completed_run, tmp_path, calibration):
    """`evaluation.method: likelihood`: every answer of both systems is a label; with batch calibration each
    system's answers on a two-label set hold both labels (the mean-centred score difference changes sign)."""
    done, _ = completed_run
    workdir = tmp_path / "work"
    shutil.copytree(done, workdir, symlinks=True)
    spec_file = write_manifest(tmp_path / "job.yaml", run_manifest(
        {"examples": BALANCED, "method": "likelihood", "calibration": calibration}))
    result = run_cli("run", spec_file, "--workdir", workdir)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert sum("already complete" in line for line in result.stdout.splitlines()) == 2, result.stdout
    report = json.loads((workdir / "evaluate" / "report.json").read_text())
    assert "rank classification" in report["metricVariant"]
    assert ("batch calibration" in report["metricVariant"]) is (calibration == "batch")
    for system in SYSTEMS:
        answers = [row[system]["answer"] for row in report["predictions"]]
        assert set(answers) <= {"positive", "negative"}, answers
        assert [row[system]["label"] for row in report["predictions"]] == answers
        if calibration == "batch":
            assert set(answers) == {"positive", "negative"}, (system, answers)


BAD_FILES = [
    ('{"input": "fine", "output": "positive"}\n\n{"input": "broken", "output": }\n', 3, ""),
    ('{"input": "fine", "output": "positive"}\n{"input": "no output"}\n', 2, "output"),
    ('{"input": "fine", "output": "positive"}\n{"input": "", "output": "negative"}\n', 2, "input"),
    ('{"input": "fine", "output": "positive"}\n["input", "output"]\n', 2, ""),
]


@pytest.mark.parametrize(("content", "line", "detail"), BAD_FILES,
                         ids=["invalid-json", "missing-field", "empty-input", "not-an-object"])
def test_a_bad_evaluation_line_is_named(tmp_path, content, line, detail):
    from selfguide.contract.errors import PermanentError
    from selfguide.spec.evaluation import EvaluationSpec
    from selfguide.stages.evaluate.stage import load_eval_set

    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(content)
    with pytest.raises(PermanentError) as caught:
        load_eval_set(EvaluationSpec(path=str(eval_file)))
    message = str(caught.value)
    assert message.startswith(f"spec.evaluation.path: {eval_file} line {line}: "), message
    assert detail in message.split(f"line {line}: ", 1)[1]


@pytest.mark.slow
def test_a_bad_evaluation_line_fails_the_first_stage_naming_it(tmp_path):
    """Fail fast: the evaluation set is read before generation starts, not after generate and train."""
    content, line, _ = BAD_FILES[0]
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(content)
    spec_file = write_manifest(tmp_path / "job.yaml", run_manifest({"path": str(eval_file)}))
    termination = tmp_path / "termination-log"
    result = run_cli("stage", "generate", "--spec", spec_file, "--workdir", tmp_path / "work", timeout=300,
                     SELFGUIDE_TERMINATION_LOG=str(termination))
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"{eval_file} line {line}: " in result.stderr
    message = json.loads(termination.read_text())
    assert message["stage"] == "generate" and message["ok"] is False and message["permanent"] is True
    assert f"line {line}" in message["error"]
    assert not (tmp_path / "work" / "generate").exists()


def test_a_missing_or_empty_evaluation_file_is_a_permanent_error(tmp_path):
    from selfguide.contract.errors import PermanentError
    from selfguide.spec.evaluation import EvaluationSpec
    from selfguide.stages.evaluate.stage import load_eval_set

    with pytest.raises(PermanentError, match="nope.jsonl does not exist"):
        load_eval_set(EvaluationSpec(path=str(tmp_path / "nope.jsonl")))
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    with pytest.raises(PermanentError, match="holds no examples"):
        load_eval_set(EvaluationSpec(path=str(tmp_path / "blank.jsonl")))


@pytest.mark.slow
def test_the_generated_set_was_reused(completed_run, generated_sentiment):
    workdir, _ = completed_run
    assert read_jsonl(workdir / "generate" / "train.jsonl") == read_jsonl(
        generated_sentiment.workdir / "generate" / "train.jsonl")


@pytest.mark.slow
def test_a_real_run_leaves_the_html_report_cost_funnel_and_serving_files(completed_run):
    workdir, result = completed_run
    html = (workdir / "evaluate" / "report.html").read_text()
    assert all(f'id="{section}"' in html for section in ("scores", "funnel", "examples", "dropped", "predictions"))
    assert all(e["input"] in html for e in EVAL) and "data:image/png;base64," in html
    for stage_name in ("train", "evaluate"):
        summary = json.loads((workdir / stage_name / "record.json").read_text())["summary"]
        assert summary["wallSeconds"] > 0 and summary["gpus"] == 0 and summary["gpuSeconds"] == 0
    generate = json.loads((workdir / "generate" / "record.json").read_text())["summary"]
    if "funnel" in generate:  # the shared generate run may predate the funnel counts
        assert generate["funnel"][0]["entered"] == generate["candidates"]
    serving = workdir / "serving"
    assert "--enable-lora" in (serving / "vllm-serve.sh").read_text()
    assert (serving / "modeladapter.yaml").is_file() and "serving:" in result.stdout
