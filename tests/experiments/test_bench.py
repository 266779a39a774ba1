"""`selfguide bench` and `selfguide sweep` on a small task in the SNI task-file format (tests/fixtures/sni)."""

from __future__ import annotations

import itertools
import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from selfguide.experiments.bench import TaskScore
from selfguide.experiments.sweep import SweepConfig, SweepResult, evidence_line, sweep_table, with_evidence
from tests.stage_runs import REPO, read_jsonl, run_cli

pytestmark = pytest.mark.slow

FIXTURES = REPO / "tests" / "fixtures" / "sni"
"""Tasks in the SNI task-file format written for these tests (the development tasks live in ../shared)."""
TASK_NAME = "task900_selfguide_review_polarity"
TASK = FIXTURES / f"{TASK_NAME}.json"
GENERATION_TASK = FIXTURES / "task901_selfguide_reverse_words.json"
TINY = REPO / "benchmarks" / "configs" / "tiny.yaml"


def manifests(task_dir: Path) -> dict[str, int]:
    return {stage: (task_dir / stage / "record.json").stat().st_mtime_ns for stage in ("generate", "train", "evaluate")}


def table_rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|")]


# -- bench -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bench") / "runs"
    args = ("bench", TASK, "--workdir", workdir, "--config", TINY, "--max-eval", "4", "--annotator-items", "4")
    result = run_cli(*args)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return workdir, args, result


def test_bench_prints_the_paper_table(bench):
    workdir, _, result = bench
    rows = table_rows(result.stdout)
    assert rows[0] == ["task", "metric", "few-shot prompting", "SELF-GUIDE", "delta [95% interval]", "verdict",
                       "McNemar p", "seeds", "generated examples", "annotator accuracy / majority", "stage time"]
    task_rows = [r for r in rows if r[0] == TASK_NAME]
    average = [r for r in rows if r[0].startswith("**average classification**")]
    assert len(task_rows) == 1 and len(average) == 1
    assert not [r for r in rows if r[0].startswith("**average generation**")]
    task_row, average_row = task_rows[0], average[0]
    assert task_row[1] == average_row[1] == "exact_match"
    assert average_row[0] == "**average classification** (1)"
    assert average_row[2:5] == task_row[2:5]  # one task: the average is that task, and its interval too
    report = json.loads((workdir / TASK_NAME / "evaluate" / "report.json").read_text())
    found = report.get("findings") or {}
    collapsed = bool(found.get("trainingSet") or found.get("answers"))  # the tiny budget can collapse
    assert task_row[5] == ("collapse" if collapsed else average_row[5])  # a collapse is named whatever the interval
    funnel = json.loads((workdir / TASK_NAME / "generate" / "filter_report.json").read_text())
    delta = report["finetuned"] - report["baseline"]
    assert task_row[2:4] == [f"{report['baseline']:.1f}", f"{report['finetuned']:.1f}"]
    assert task_row[4].startswith(f"{delta:+.1f} [") and task_row[7:9] == ["1", str(funnel["final"])]
    assert task_row[5] in ("better", "worse", "no difference", "collapse") and task_row[6] != "-"  # McNemar
    assert report["examples"] == 4  # --max-eval
    annotator = json.loads((workdir / TASK_NAME / "annotator.json").read_text())["result"]
    cannot_help = " (cannot help)" if annotator["accuracy"] <= annotator["majorityShare"] else ""
    assert annotator["items"] == 4
    assert task_row[9] == f"{annotator['accuracy']:.1f} / {annotator['majorityShare']:.1f}{cannot_help}"
    assert (workdir / "bench.md").read_text() == "\n".join(line for line in result.stdout.splitlines()
                                                            if line.startswith("|")) + "\n"


def test_bench_writes_jsonl_scores(bench):
    workdir, _, _ = bench
    rows = read_jsonl(workdir / "bench.jsonl")
    assert len(rows) == 1
    row = rows[0]
    report = json.loads((workdir / TASK_NAME / "evaluate" / "report.json").read_text())
    assert row["task"] == TASK_NAME and row["task_type"] == "classification" and row["metric"] == "exact_match"
    assert (row["baseline"], row["finetuned"], row["examples"]) == (report["baseline"], report["finetuned"], 4)
    assert row["delta"] == round(report["finetuned"] - report["baseline"], 2)
    assert row["kept"] == json.loads((workdir / TASK_NAME / "generate" / "filter_report.json").read_text())["final"]
    [run] = row["runs"]  # per-item scores of both systems, for the intervals
    assert run["baselineItems"] == [p["fewShotPrompting"]["score"] for p in report["predictions"]]
    assert run["finetunedItems"] == [p["selfGuide"]["score"] for p in report["predictions"]]
    found = report.get("findings") or {}
    named = [f for f in (found.get("trainingSet"), found.get("answers")) if f]
    assert bool(run["collapse"]) == bool(named)  # what collapsed, as the report's findings say
    low, high = row["interval"]
    assert low <= row["delta"] <= high and row["verdict"] == ("collapse" if named else "better" if low > 0
                                                              else "worse" if high < 0 else "no difference")
    # the task's own test split is what gets scored
    test_split = read_jsonl(workdir / TASK_NAME / "test.jsonl")
    assert len(test_split) == len(json.loads(TASK.read_text())["test"])
    assert [p["input"] for p in report["predictions"]] == [r["input"] for r in test_split[:4]]


def test_a_second_bench_run_resumes(bench):
    workdir, args, first = bench
    before = manifests(workdir / TASK_NAME)
    started = time.monotonic()
    result = run_cli(*args)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line for line in first.stdout.splitlines() if line.startswith("|")]
    assert [line for line in result.stdout.splitlines() if line.startswith("|")] == table
    assert manifests(workdir / TASK_NAME) == before
    for stage in ("generate", "train", "evaluate"):
        assert f"stage {stage} already complete" in result.stderr
    assert seconds < 60, f"a fully resumed bench took {seconds:.0f}s"


def test_benches_of_one_workdir_add_up(bench, tmp_path):
    """A task benched earlier in the same workdir keeps its row; the task benched now replaces its own."""
    workdir, args, _ = bench
    copy = tmp_path / "runs"
    shutil.copytree(workdir, copy, symlinks=True)
    rows = read_jsonl(copy / "bench.jsonl")
    earlier = {**rows[0], "task": "task000_benched_earlier", "baseline": 12.5, "finetuned": 25.0, "delta": 12.5}
    stale = {**rows[0], "finetuned": -1.0, "delta": -1.0 - rows[0]["baseline"]}
    (copy / "bench.jsonl").write_text(json.dumps(earlier) + "\n" + json.dumps(stale) + "\n")
    result = run_cli(*[copy if a == workdir else a for a in args])
    assert result.returncode == 0, result.stderr[-3000:]
    kept, rerun = read_jsonl(copy / "bench.jsonl")
    report = json.loads((copy / TASK_NAME / "evaluate" / "report.json").read_text())
    assert kept == earlier and (rerun["task"], rerun["finetuned"]) == (TASK_NAME, report["finetuned"])
    printed = [r[0] for r in table_rows(result.stdout)]
    assert printed[2:] == ["task000_benched_earlier", TASK_NAME, "**average classification** (2)"]


def test_a_bench_of_another_annotation_starts_from_the_inputs_of_a_first(bench, tmp_path):
    """`--inputs-from`: no input is generated again; every input and its input filters' verdict carry over, and
    annotation runs anew (here with the calibrated likelihood instead of the vote)."""
    source, _, _ = bench
    likelihood = tmp_path / "likelihood.yaml"
    likelihood.write_text(yaml.safe_dump({"generation": {"annotation": {"method": "likelihood", "calibration": "batch"}}}))
    workdir = tmp_path / "runs"
    result = run_cli("bench", TASK, "--workdir", workdir, "--config", TINY, "--config", likelihood, "--max-eval", "4",
                     "--annotator-items", "0", "--inputs-from", source)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"input generation reused from {source / TASK_NAME}" in result.stderr
    assert "inputs round 1" not in result.stderr  # the progress bar of input generation never appeared
    ours, theirs = read_jsonl(workdir / TASK_NAME / "generate" / "candidates.jsonl"), read_jsonl(
        source / TASK_NAME / "generate" / "candidates.jsonl")
    assert [(r["input"], r.get("reason") if r["droppedAt"] == "input" else None) for r in ours] == [
        (r["input"], r.get("reason") if r["droppedAt"] == "input" else None) for r in theirs]
    annotated = [r for r in ours if r["droppedAt"] != "input"]
    assert annotated and all("scores" in r for r in annotated)  # the likelihood's label scores: annotated anew
    assert not any("scores" in r for r in theirs)


def test_inputs_of_other_input_settings_are_refused_by_name(bench, tmp_path):
    source, _, _ = bench
    other_seed = tmp_path / "seed.yaml"
    other_seed.write_text(yaml.safe_dump({"generation": {"seed": 7}}))
    result = run_cli("bench", TASK, "--workdir", tmp_path / "runs", "--config", TINY, "--config", other_seed,
                     "--inputs-from", source)
    assert result.returncode != 0
    assert "generated its inputs with other settings (generation differ)" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("bench", TASK, "--workdir", tmp_path / "runs", "--config", TINY, "--inputs-from", tmp_path)
    assert result.returncode != 0 and "holds no completed generate stage" in result.stderr


# -- sweep -------------------------------------------------------------------------------------------------


def test_sweep_shares_one_generate_stage_between_configurations(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["training"]["maxLength"] = 96  # the grid varies epochs; short sequences keep CPU training quick
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text(yaml.safe_dump(config))
    # a second recipe that only changes generation tasks is the same configuration for this classification task;
    # a third changes annotation only, so it starts from the inputs the first generated
    recipes = [tmp_path / "paper.yaml", tmp_path / "wordy.yaml", tmp_path / "likelihood.yaml"]
    recipes[0].write_text("{}\n")
    recipes[1].write_text(yaml.safe_dump({"forGeneration": {"evaluation": {"maxNewTokens": 64}}}))
    recipes[2].write_text(yaml.safe_dump({"forClassification": {"generation": {"annotation": {"method": "likelihood"}}}}))
    workdir = tmp_path / "sweep"
    result = run_cli("sweep", TASK, "--workdir", workdir, "--temperature", "1.0", "--length-filters", "false",
                     "--epochs", "1", "--epochs", "2", "--config", config_file, "--max-eval", "2",
                     *itertools.chain.from_iterable(("--recipe", recipe) for recipe in recipes))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    task_root = workdir / TASK_NAME
    likelihood = [task_root / f"likelihood-T1.0-lf0-e{epochs}" for epochs in (1, 2)]
    assert result.stderr.count("generate.stage: round 1:") == 1  # input generation ran once, for the paper's recipe
    assert result.stderr.count(f"input generation reused from {task_root / 'paper-T1.0-lf0-e1'}") == 1
    paper_inputs, likelihood_inputs = (read_jsonl(task_root / d / "generate" / "candidates.jsonl")
                                       for d in ("paper-T1.0-lf0-e1", likelihood[0]))
    assert [r["input"] for r in likelihood_inputs] == [r["input"] for r in paper_inputs]
    assert (likelihood[1] / "generate").resolve() == (likelihood[0] / "generate").resolve()
    config_dirs = sorted(p for p in task_root.iterdir() if p.is_dir() and not p.is_symlink()
                         and not p.name.startswith(("generate", ".")) and p not in likelihood)
    assert [p.name for p in config_dirs] == ["paper-T1.0-lf0-e1", "paper-T1.0-lf0-e2"]
    for epochs, run_dir in zip((1, 2), config_dirs):
        assert (task_root / f"wordy-T1.0-lf0-e{epochs}").resolve() == run_dir.resolve()
    links = [d / "generate" for d in config_dirs]
    assert all(link.is_symlink() for link in links)
    targets = {link.resolve() for link in links}
    assert len(targets) == 1, targets
    shared = targets.pop()
    assert shared.parent == task_root and shared.name.startswith("generate-")
    generate_dirs = {p.name for p in task_root.iterdir() if p.name.startswith(("generate", ".generate"))}
    assert generate_dirs == {shared.name, (likelihood[0] / "generate").resolve().name}

    # generation ran once, for the first configuration; the second found it complete
    generated_at = (shared / "record.json").stat().st_mtime_ns
    first_done = (config_dirs[0] / "evaluate" / "record.json").stat().st_mtime_ns
    second_train = (config_dirs[1] / "train" / "record.json").stat().st_mtime_ns
    assert generated_at < first_done < second_train
    assert result.stderr.count("stage generate already complete") == 2  # paper's second config, likelihood's
    assert "stage train already complete" not in result.stderr
    steps = [json.loads((d / "train" / "record.json").read_text())["summary"]["epochs"] for d in config_dirs]
    assert steps == [1, 2]

    sweep = json.loads((workdir / "sweep.json").read_text())
    results = sweep["results"]
    assert [(r["config"]["recipe"], r["config"]["epochs"]) for r in results] == [
        ("paper", 1), ("paper", 2), ("wordy", 1), ("wordy", 2), ("likelihood", 1), ("likelihood", 2)]
    assert [r["tasks"] for r in results[2:4]] == [r["tasks"] for r in results[:2]]
    best = max(results, key=lambda r: (r["worstDelta"], r["meanDelta"]))
    assert sweep["best"] == best["config"]
    results = results[:2]
    assert sweep["best"]["temperature"] == 1.0 and sweep["best"]["lengthFilters"] is False
    for r, d in zip(results, config_dirs):
        report = json.loads((d / "evaluate" / "report.json").read_text())
        assert report["examples"] == 2
        assert r["tasks"][TASK_NAME] == pytest.approx(round(report["finetuned"] - report["baseline"], 2))
        assert r["worstDelta"] == pytest.approx(report["finetuned"] - report["baseline"])
    label = f"{sweep['best']['recipe']} T=1.0 length-filters=off epochs={sweep['best']['epochs']}"
    assert f"best: {label}" in result.stdout
    assert f"| {label} **(best)** |" in (workdir / "sweep.md").read_text()


def test_sweep_with_seeds_runs_each_seed_in_its_own_directory_and_pools_them(tmp_path):
    """`--seeds 2`: each configuration runs twice (generation and training seeds moved together), one shared
    `generate` stage per seed; the row's delta is the seeds' mean (the evidence between configurations:
    test_the_sweep_calls_a_difference_only_where_its_interval_excludes_zero)."""
    config = yaml.safe_load(TINY.read_text())
    config["training"]["maxLength"] = 96
    config_file = tmp_path / "sweep.yaml"
    config_file.write_text(yaml.safe_dump(config))
    unbalanced = tmp_path / "unbalanced.yaml"  # the tiny budget may keep nothing for a seed: a little more
    unbalanced.write_text("generation: {inputs: {promptsPerRound: 8}, annotation: {samples: 4, keep: 4},"
                          " filtering: {balanceClasses: false}}\n")
    workdir = tmp_path / "sweep"
    result = run_cli("sweep", TASK, "--workdir", workdir, "--temperature", "1.0", "--length-filters", "false",
                     "--epochs", "1", "--config", config_file, "--config", unbalanced, "--max-eval", "4",
                     "--seeds", "2")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    runs = [workdir / TASK_NAME / "paper-T1.0-lf0-e1" / f"seed-{k}" for k in (0, 1)]
    specs = [json.loads((run / "spec.json").read_text()) for run in runs]
    assert [(s["generation"]["seed"], s["training"]["seed"]) for s in specs] == [(0, 0), (1, 1)]
    generates = [(run / "generate") for run in runs]
    assert all(g.is_symlink() for g in generates) and generates[0].resolve() != generates[1].resolve()
    assert result.stderr.count("generate.stage: round 1:") == 2

    sweep = json.loads((workdir / "sweep.json").read_text())
    assert sweep["seeds"] == 2 and sweep["confidence"] == 0.95
    [row] = sweep["results"]
    reports = [json.loads((run / "evaluate" / "report.json").read_text()) for run in runs]
    assert row["tasks"][TASK_NAME] == pytest.approx(
        round(sum(r["finetuned"] - r["baseline"] for r in reports) / 2, 2), abs=0.01)
    assert row["againstBest"] == [0.0, 0.0]
    assert "best: paper T=1.0 length-filters=off epochs=1 (the only configuration)" in result.stdout


def test_the_sweep_calls_a_difference_only_where_its_interval_excludes_zero():
    """The rule's choice and the evidence for it, on scores with per-item differences: a configuration whose worst
    task is far below is `worse`; one within noise of the best is `no difference`, and the sweep says the choice
    between them is not supported."""
    def score(task: str, differences: list[float]) -> TaskScore:
        runs = [{"seed": k, "baselineItems": [50.0] * len(d), "finetunedItems": [50.0 + x for x in d]}
                for k, d in enumerate([differences, differences[::-1]])]
        return TaskScore(task, "classification", "exact_match", 50.0, 50.0 + sum(differences) / len(differences),
                         len(differences), 10, {}, 1.0, None, runs)

    noise = [-20.0, 0.0, 0.0, 20.0] * 15
    other = noise[1:] + noise[:1]  # the same spread on other items: the third configuration is not just shifted
    configs = [SweepConfig(1.0, False, epochs) for epochs in (1, 2, 3)]
    results = [SweepResult(configs[0], [score("a", [10 + x for x in noise]), score("b", [8 + x for x in noise])]),
               SweepResult(configs[1], [score("a", [-30 + x for x in noise]), score("b", [9 + x for x in noise])]),
               SweepResult(configs[2], [score("a", [9 + x for x in other]), score("b", [7 + x for x in other])])]
    best, ranked = with_evidence(results)
    assert best.config == configs[0] and best.against_best == (0.0, 0.0)
    assert [r.verdict for r in ranked[1:]] == ["worse", "no difference"]
    assert ranked[1].against_best[0] > 0 > ranked[2].against_best[0]
    line = evidence_line(best, ranked)
    assert f"no difference from {configs[2].label}" in line and f"better than {configs[1].label}" in line
    rows = table_rows(sweep_table(ranked, best))
    assert [r[-1] for r in rows[2:]] == ["chosen", "worse", "no difference"]


@pytest.mark.parametrize("content", ["{not json", '{"name": "x"}', "[1, 2]"], ids=["not-json", "fields", "a-list"])
def test_a_file_that_is_not_a_task_is_invalid_input_with_its_name(tmp_path, content):
    task = tmp_path / "task.json"
    task.write_text(content)
    result = run_cli("bench", task, "--workdir", tmp_path / "runs", "--config", TINY)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{task}: not a" in result.stderr and "Traceback" not in result.stderr


def test_bench_with_seeds_runs_each_seed_and_pools_them(tmp_path):
    """`--seeds 2`: two runs with the generation and training seeds moved together, each in its own directory;
    the row's scores are their means and its interval covers items and seeds."""
    workdir = tmp_path / "runs"
    unbalanced = tmp_path / "unbalanced.yaml"  # the tiny budget may keep nothing for a seed: a little more
    unbalanced.write_text("generation: {inputs: {promptsPerRound: 8}, annotation: {samples: 4, keep: 4},"
                          " filtering: {balanceClasses: false}}\n")
    result = run_cli("bench", TASK, "--workdir", workdir, "--config", TINY, "--config", unbalanced, "--max-eval", "4",
                     "--annotator-items", "0", "--seeds", "2")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    specs = [json.loads((workdir / TASK_NAME / f"seed-{k}" / "spec.json").read_text()) for k in (0, 1)]
    assert [(s["generation"]["seed"], s["training"]["seed"]) for s in specs] == [(0, 0), (1, 1)]
    [row] = read_jsonl(workdir / "bench.jsonl")
    reports = [json.loads((workdir / TASK_NAME / f"seed-{k}" / "evaluate" / "report.json").read_text()) for k in (0, 1)]
    assert [r["seed"] for r in row["runs"]] == [0, 1]
    assert row["finetuned"] == pytest.approx(sum(r["finetuned"] for r in reports) / 2)
    assert row["interval"][0] <= row["delta"] <= row["interval"][1]
    [task_row] = [r for r in table_rows(result.stdout) if r[0] == TASK_NAME]
    assert task_row[7] == "2"
