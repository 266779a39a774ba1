"""Bookkeeping of the `generate` stage, driven by a scripted language model (no model is loaded)."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from selfguide.contract import progress
from selfguide.contract.filter_report import FilterReport
from selfguide.contract.layout import CANDIDATES_FILE, FILTER_REPORT_FILE, TRAIN_FILE
from selfguide.engine.backends.base import Completion, SamplingParams, Throughput
from selfguide.prompts import INPUT_RESPONSE_PREFIX, RULE, input_generation_prompt
from selfguide.spec import SelfGuideJobSpec
from selfguide.stages.generate.filters import length_band
from selfguide.stages.generate.stage import inputs_settings, run_generate, seed_inputs
from tests import manifests

ROW_KEYS = {"input", "round", "pseudoLabel", "output", "droppedAt", "filter", "reason", "votes", "validSamples",
            "scores", "margin"}


class ScriptedModel:
    """A GenerationBackend whose "sampling" is a script.

    It stands in for a language model (which the unit tests cannot load), not for any selfguide logic:
    prompts are rendered by joining the messages, a token is a whitespace-separated word, input-generation
    completions come from `write_input(round, index in round, pseudo-label)` and annotation samples from
    `annotate(input)` (most likely first). It records every prompt it receives.
    """

    def __init__(self, write_input: Callable[[int, int, str | None], str],
                 annotate: Callable[[str], Sequence[str]] = lambda text: [text] * 64,
                 score: Callable[[str, str], float] = lambda text, answer: 0.0) -> None:
        self.write_input = write_input
        self.annotate = annotate
        self.score = score
        self.scored: list[str] = []
        self.throughput = Throughput()
        self.input_rounds: list[list[str]] = []
        self.input_params: list[SamplingParams] = []
        self.annotation_calls: list[tuple[list[str], SamplingParams]] = []

    def render_chat(self, messages, response_prefix: str = "") -> str:
        return "\n".join(f"<{m['role']}> {m['content']}" for m in messages) + "\n<assistant> " + response_prefix

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, prompts, params: SamplingParams, desc: str = "") -> list[list[Completion]]:
        if prompts and prompts[0].endswith(INPUT_RESPONSE_PREFIX):
            round_index = len(self.input_rounds)
            self.input_rounds.append(list(prompts))
            self.input_params.append(params)
            return [[Completion(self.write_input(round_index, i * params.n + j, label_of(prompt)) + '"')
                     for j in range(params.n)] for i, prompt in enumerate(prompts)]
        self.annotation_calls.append((list(prompts), params))
        outputs = []
        for prompt in prompts:
            answers = list(self.annotate(input_of(prompt)))
            assert len(answers) >= params.n, "script too short"
            outputs.append([Completion(a, logprob=-float(i)) for i, a in enumerate(answers[: params.n])])
        return outputs

    def score_answers(self, prompts, answers, desc: str = "") -> list[list[float]]:
        self.scored.extend(input_of(p) for p in prompts)
        return [[self.score(input_of(p), a) for a in answers] for p in prompts]

    def adapter_disabled(self):  # pragma: no cover - part of the protocol, unused by generate
        raise NotImplementedError

    def close(self) -> None:
        pass


def label_of(prompt: str) -> str | None:
    match = re.search(r"for which the expected \[output\] is (.+?)\. Before", prompt)
    return match.group(1) if match else None


def input_of(annotation_prompt: str) -> str:
    return annotation_prompt.rsplit("<user> [input] = ", 1)[1].removesuffix("\n<assistant> ")


def low_quality(prompt: str) -> list[str] | None:
    """The pool inputs shown in an input-generation prompt (None for "N/A")."""
    section = prompt.split("Some low-quality [input]:\n\n", 1)[1].split("\n" + RULE, 1)[0]
    if section == "N/A":
        return None
    return [item.removeprefix('[input]="').removesuffix('"') for item in section.split("\n\n")]


def spec_for(task: dict, **generation) -> SelfGuideJobSpec:
    return SelfGuideJobSpec.model_validate({"task": task, "generation": generation})


def run(spec: SelfGuideJobSpec, model: ScriptedModel, out: Path) -> tuple[dict, list[dict], list[dict]]:
    return run_with_checkpoint(spec, model, out, None)


def run_with_checkpoint(spec: SelfGuideJobSpec, model: ScriptedModel, out: Path,
                        checkpoint: Path | None) -> tuple[dict, list[dict], list[dict]]:
    result = run_generate(spec, model, out, checkpoint)
    report = json.loads((out / FILTER_REPORT_FILE).read_text())
    rows = [json.loads(line) for line in (out / CANDIDATES_FILE).read_text().splitlines()]
    train = [json.loads(line) for line in (out / TRAIN_FILE).read_text().splitlines()]
    assert result.report == FilterReport.model_validate(report)
    assert result.examples == len(train)
    assert_bookkeeping(report, rows, train)
    return report, rows, train


def dropped_total(step: dict) -> int:
    return sum(n for reasons in step["dropped"].values() for n in reasons.values())


def assert_bookkeeping(report: dict, rows: list[dict], train: list[dict]) -> None:
    """The funnel adds up at every step and agrees with candidates.jsonl and train.jsonl."""
    steps = ["inputs", "annotation"] + (["balance"] if "balance" in report else [])
    stage_of = {"inputs": "input", "annotation": "annotation", "balance": "balance"}
    assert report["inputs"]["in"] == len(rows)
    for previous, step in itertools.pairwise(steps):
        assert report[step]["in"] == report[previous]["kept"]
    for step in steps:
        assert report[step]["in"] == report[step]["kept"] + dropped_total(report[step]), step
        counted = Counter((r["filter"], r["reason"]) for r in rows if r["droppedAt"] == stage_of[step])
        assert counted == Counter({(f, why): n for f, reasons in report[step]["dropped"].items()
                                   for why, n in reasons.items()}), step
    assert report["final"] == report[steps[-1]]["kept"] == len(train)
    for row in rows:
        assert set(row) <= ROW_KEYS
        if row["droppedAt"] == "kept":
            assert "reason" not in row and "filter" not in row and "output" in row
        else:
            assert row["droppedAt"] in stage_of.values() and row["filter"] and row["reason"]
    assert [{"input": r["input"], "output": r["output"]} for r in rows if r["droppedAt"] == "kept"] == train
    assert all(set(example) == {"input", "output"} for example in train)


# -- a generation task ---------------------------------------------------------------------------------
# Gold inputs are 14, 18 and 7 characters long: mean 13, population sd 4.55, so the input band is 3.9..22.1
# characters (the gold outputs have the same lengths, so the same band applies to annotation samples).

GENERATION_TASK = manifests.GENERATION["spec"]["task"]

GENERATION_INPUTS = [
    ["sun moon star", "red   green\nblue", "Of course! ab", "sun moon star", "a b c d e"],
    ["   ", "this input is far too long to pass", "ice fire", "up down", "left right"],
]

GENERATION_ANSWERS = {
    "sun moon star": ["star moon sun", "star moon sun", "moon sun star", "star moon sun"],
    "a b c d e": ["e d c b a"] * 4,
    "ice fire": ["fire ice", "ice fire", "fire  ice!", "no idea"],  # 1 vote of 4 < 0.3
    "up down": ["Absolutely! down up", "Of course! down up", " ", "x" * 40],  # nothing valid
    "left right": ["right left"] * 4,
}


def generation_model() -> ScriptedModel:
    return ScriptedModel(lambda r, k, label: GENERATION_INPUTS[r][k], lambda text: GENERATION_ANSWERS[text])


def generation_spec(**extra) -> SelfGuideJobSpec:
    return spec_for(GENERATION_TASK, inputs={"maxRounds": 2, "promptsPerRound": 5},
                    annotation={"samples": 6, "keep": 4}, **extra)


def test_generation_funnel(tmp_path):
    model = generation_model()
    report, rows, train = run(generation_spec(), model, tmp_path)

    assert report["inputs"] == {
        "in": 10, "kept": 5,
        "dropped": {"duplicate": {"duplicate": 2}, "empty": {"empty": 1}, "length": {"too_long": 1},
                    "noise": {"noise_term": 1}},
    }
    assert report["annotation"]["in"] == 5
    assert report["annotation"]["kept"] == 3
    assert report["annotation"]["dropped"] == {"vote": {"no_agreement": 1, "no_valid_answer": 1}}
    assert report["annotation"]["samplesDropped"] == {"empty": {"empty": 1}, "length": {"too_long": 1},
                                                      "noise": {"noise_term": 2}}
    assert "balance" not in report
    assert report["prompts"] == {"built": 10, "trimmed": 0, "skipped": {}}
    assert train == [
        {"input": "sun moon star", "output": "star moon sun"},
        {"input": "a b c d e", "output": "e d c b a"},
        {"input": "left right", "output": "right left"},
    ]

    by_input = {r["input"]: r for r in rows if r["droppedAt"] != "input"}
    assert (by_input["sun moon star"]["votes"], by_input["sun moon star"]["validSamples"]) == (3, 4)
    assert by_input["ice fire"] == {
        "input": "ice fire", "round": 1, "droppedAt": "annotation", "filter": "vote", "reason": "no_agreement",
        "votes": 1, "validSamples": 4}
    assert by_input["up down"]["reason"] == "no_valid_answer"
    assert by_input["up down"]["validSamples"] == 0
    assert [(r["round"], r["input"], r["reason"]) for r in rows if r["droppedAt"] == "input"] == [
        (0, "red   green\nblue", "duplicate"),  # a gold input, up to whitespace
        (0, "Of course! ab", "noise_term"),
        (0, "sun moon star", "duplicate"),  # accepted earlier in the same round
        (1, "", "empty"),
        (1, "this input is far too long to pass", "too_long"),
    ]
    assert all("pseudoLabel" not in r for r in rows)


def test_sampling_settings_reach_the_model(tmp_path):
    model = generation_model()
    run(generation_spec(seed=5), model, tmp_path)
    first, second = model.input_params
    assert (first.n, first.temperature, first.top_k, first.max_tokens) == (1, 0.9, 40, 256)
    assert '"\n' in first.stop
    assert (first.seed, second.seed) == (5, 6)
    ((prompts, params),) = model.annotation_calls
    assert len(prompts) == 5
    assert (params.n, params.best_of, params.temperature, params.top_k) == (4, 6, 0.2, 10)


def test_input_decoding_stops_where_the_length_filter_would_drop_the_input(tmp_path):
    model = generation_model()
    run(generation_spec(), model, tmp_path / "on")
    band = length_band([e["input"] for e in GENERATION_TASK["examples"]], 2.0, 0.25)
    assert model.input_params[0].max_chars == math.floor(band.high) + 1  # + the closing quote
    off = ScriptedModel(lambda r, k, label: GENERATION_INPUTS[r][k])  # annotations repeat the input
    run(generation_spec(filtering={"inputLength": {"enabled": False}}), off, tmp_path / "off")
    assert off.input_params[0].max_chars is None


def test_generation_prompts_carry_no_label(tmp_path):
    model = generation_model()
    run(generation_spec(), model, tmp_path)
    for prompt in (p for batch in model.input_rounds for p in batch):
        assert "expected [output]" not in prompt
        assert "None" not in prompt
        assert prompt.endswith(INPUT_RESPONSE_PREFIX)


def test_pool_is_refreshed_only_between_rounds(tmp_path):
    model = generation_model()
    _, rows, _ = run(generation_spec(), model, tmp_path)
    round0, round1 = model.input_rounds
    assert all(low_quality(p) is None for p in round0)  # "N/A" while the pool is empty
    accepted_round0 = {r["input"] for r in rows if r["round"] == 0 and r["droppedAt"] != "input"}
    assert accepted_round0 == {"sun moon star", "a b c d e"}
    for prompt in round1:
        shown = low_quality(prompt)
        assert shown and set(shown) <= accepted_round0 and len(shown) == len(set(shown))
        assert "N/A" not in prompt


def test_rejected_inputs_never_enter_the_pool_and_rounds_are_bounded(tmp_path):
    gold = [e["input"] for e in GENERATION_TASK["examples"]]
    model = ScriptedModel(lambda r, k, label: gold[k % len(gold)])  # only copies of the gold inputs
    spec = spec_for(GENERATION_TASK, inputs={"maxRounds": 3, "promptsPerRound": 4})
    report, _, train = run(spec, model, tmp_path)
    assert len(model.input_rounds) == 3
    assert all(low_quality(p) is None for batch in model.input_rounds for p in batch)
    assert report["inputs"]["dropped"] == {"duplicate": {"duplicate": 12}}
    assert train == [] and model.annotation_calls == []


def test_target_inputs_stops_early(tmp_path):
    model = ScriptedModel(lambda r, k, label: f"word{r} item{k}")
    spec = spec_for(GENERATION_TASK, inputs={"maxRounds": 10, "promptsPerRound": 2, "targetInputs": 4})
    report, rows, _ = run(spec, model, tmp_path)
    assert len(model.input_rounds) == 2  # 2 accepted after round 1, 4 (the target) after round 2
    assert report["inputs"]["in"] == 4
    assert {r["round"] for r in rows} == {0, 1}


def test_annotation_reports_progress_as_it_goes(tmp_path):
    model = ScriptedModel(lambda r, k, label: f"word{r} item{k}")
    spec = spec_for(GENERATION_TASK, inputs={"maxRounds": 5, "promptsPerRound": 10},
                    annotation={"samples": 6, "keep": 4})
    seen: list[progress.StageProgress] = []
    with progress.tracking(progress.ProgressTracker("generate", [seen.append])):
        report, _, _ = run(spec, model, tmp_path)
    assert report["annotation"]["in"] == 50
    annotated = [(p.inputs_annotated, p.percent) for p in seen if p.inputs_annotated]
    # chunks of at least 16 inputs, each reported when done: 16, 32, 48, 50, then the final count
    assert [n for n, _ in annotated] == [16, 32, 48, 50, 50]
    assert len(model.annotation_calls) == 4
    percents = [pct for _, pct in annotated]
    assert percents == sorted(percents) and 50 < percents[0] and percents[-1] == 99.0
    assert all(p.inputs_total == 50 for p in seen if p.inputs_annotated)


def test_max_rounds_without_target(tmp_path):
    model = ScriptedModel(lambda r, k, label: f"word{r} item{k}")
    report, _, _ = run(spec_for(GENERATION_TASK, inputs={"maxRounds": 3, "promptsPerRound": 2}), model, tmp_path)
    assert len(model.input_rounds) == 3
    assert report["final"] == 6


def base_prompt_tokens(model: ScriptedModel) -> int:
    """Tokens of an input-generation prompt with the gold inputs and an empty pool."""
    gold = [e["input"] for e in GENERATION_TASK["examples"]]
    message = input_generation_prompt(GENERATION_TASK["instruction"], gold, [])
    return model.count_tokens(model.render_chat([{"role": "user", "content": message}], INPUT_RESPONSE_PREFIX))


@pytest.mark.timeout(20)
def test_prompts_that_never_fit_are_skipped_and_the_stage_ends(tmp_path):
    model = ScriptedModel(lambda r, k, label: f"word{r} item{k}")
    spec = spec_for(GENERATION_TASK, maxPromptTokens=64, inputs={"maxRounds": 1000, "promptsPerRound": 7})
    assert base_prompt_tokens(model) > 64
    report, rows, train = run(spec, model, tmp_path)
    assert report["prompts"] == {"built": 0, "trimmed": 0, "skipped": {"prompt_too_long": 7}}
    assert model.input_rounds == [] and model.annotation_calls == []
    assert rows == [] and train == []


def test_over_long_prompts_are_trimmed_to_fit(tmp_path):
    model = ScriptedModel(lambda r, k, label: f"word{r} item{k}")
    budget = base_prompt_tokens(model)  # room for "N/A" but not for any pool input
    spec = spec_for(GENERATION_TASK, maxPromptTokens=budget, inputs={"maxRounds": 2, "promptsPerRound": 3})
    report, _, train = run(spec, model, tmp_path)
    assert report["prompts"] == {"built": 6, "trimmed": 3, "skipped": {}}
    assert all(low_quality(p) is None for batch in model.input_rounds for p in batch)
    assert all(model.count_tokens(p) <= budget for batch in model.input_rounds for p in batch)
    assert len(train) == 6


def test_over_long_annotation_prompts_are_dropped(tmp_path):
    long_input = " ".join(["word"] * 400)
    model = ScriptedModel(lambda r, k, label: [long_input, "short one"][k])
    budget = base_prompt_tokens(model)
    spec = spec_for(GENERATION_TASK, maxPromptTokens=budget, inputs={"maxRounds": 1, "promptsPerRound": 2},
                    filtering={"inputLength": {"enabled": False}, "outputLength": {"enabled": False}})
    report, _, train = run(spec, model, tmp_path)
    assert report["annotation"]["dropped"] == {"prompt": {"prompt_too_long": 1}}
    assert train == [{"input": "short one", "output": "short one"}]
    ((prompts, _),) = model.annotation_calls
    assert [input_of(p) for p in prompts] == ["short one"]


def test_noise_terms_of_one_job_do_not_leak_into_the_next(tmp_path):
    def script(r, k, label):
        return ["banana split", "apple pie"][k]

    noisy = spec_for(GENERATION_TASK, inputs={"maxRounds": 1, "promptsPerRound": 2},
                     filtering={"noiseTerms": ["BANANA"]})
    report, _, train = run(noisy, ScriptedModel(script), tmp_path / "a")
    assert report["inputs"]["dropped"] == {"noise": {"noise_term": 1}}
    assert [t["input"] for t in train] == ["apple pie"]

    plain = spec_for(GENERATION_TASK, inputs={"maxRounds": 1, "promptsPerRound": 2})
    _, _, train = run(plain, ScriptedModel(script), tmp_path / "b")
    assert [t["input"] for t in train] == ["banana split", "apple pie"]


def test_near_duplicates_when_enabled(tmp_path):
    def script(r, k, label):
        return ["sun moon star", "sun moon stars", "rain and snow"][k]

    spec = spec_for(GENERATION_TASK, inputs={"maxRounds": 1, "promptsPerRound": 3},
                    filtering={"nearDuplicates": {"enabled": True, "threshold": 0.9}})
    report, _, train = run(spec, ScriptedModel(script), tmp_path)
    assert report["inputs"]["dropped"] == {"near_duplicate": {"near_duplicate": 1}}
    assert [t["input"] for t in train] == ["sun moon star", "rain and snow"]


# -- a classification task -----------------------------------------------------------------------------

CLASSIFICATION_TASK = manifests.CLASSIFICATION["spec"]["task"]


def sentiment_of(text: str) -> str:
    """The scripted annotator's verdict: positive for every fourth input, whatever its pseudo-label."""
    return "positive" if int(text.split("#")[1]) % 4 == 0 else "negative"


def classification_run(tmp_path: Path, **filtering) -> tuple[ScriptedModel, dict, list[dict], list[dict]]:
    model = ScriptedModel(
        lambda r, k, label: f"a {label} review #{k}",
        lambda text: [f"The answer is {sentiment_of(text)}.", sentiment_of(text).upper(), "I know"],
    )
    spec = spec_for(CLASSIFICATION_TASK, inputs={"maxRounds": 1, "promptsPerRound": 12},
                    annotation={"samples": 5, "keep": 3},
                    filtering={"inputLength": {"enabled": False}, **filtering})
    return model, *run(spec, model, tmp_path)


def test_classification_prompts_are_conditioned_on_a_pseudo_label(tmp_path):
    model, _, rows, _ = classification_run(tmp_path)
    (prompts,) = model.input_rounds
    labels = [label_of(p) for p in prompts]
    assert set(labels) <= {"positive", "negative"} and None not in labels
    for prompt, label in zip(prompts, labels):
        assert f"should be {label}." in prompt
    assert [r["pseudoLabel"] for r in rows] == labels
    assert all(r["input"] == f"a {r['pseudoLabel']} review #{i}" for i, r in enumerate(rows))


def test_annotation_not_the_pseudo_label_decides_the_training_label(tmp_path):
    _, report, rows, train = classification_run(tmp_path, balanceClasses=False)
    assert "balance" not in report
    annotated = [r for r in rows if r["droppedAt"] == "kept"]
    assert len(annotated) == 12 == len(train)
    assert all(r["output"] == sentiment_of(r["input"]) for r in annotated)
    assert any(r["output"] != r["pseudoLabel"] for r in annotated)
    assert all((r["votes"], r["validSamples"]) == (2, 2) for r in annotated)
    assert report["annotation"]["samplesDropped"] == {"label": {"not_a_label": 12}}


def test_class_balancing_downsamples_to_the_rarest_label(tmp_path):
    _, report, rows, train = classification_run(tmp_path)
    balance = report["balance"]
    assert balance["before"] == {"positive": 3, "negative": 9}
    assert balance["after"] == {"positive": 3, "negative": 3}
    assert balance["missingLabels"] == []
    assert balance["dropped"] == {"balance": {"class_balance": 6}}
    assert (balance["in"], balance["kept"], report["final"]) == (12, 6, 6)
    assert Counter(t["output"] for t in train) == {"positive": 3, "negative": 3}
    assert all(r["output"] == "negative" for r in rows if r["droppedAt"] == "balance")
    assert {t["input"] for t in train if t["output"] == "positive"} == {
        r["input"] for r in rows if sentiment_of(r["input"]) == "positive"}


def test_a_label_nobody_produced_is_reported_missing(tmp_path):
    model = ScriptedModel(lambda r, k, label: f"review #{k}", lambda text: ["negative"] * 3)
    spec = spec_for(CLASSIFICATION_TASK, inputs={"maxRounds": 1, "promptsPerRound": 4},
                    annotation={"samples": 3, "keep": 3}, filtering={"inputLength": {"enabled": False}})
    report, _, train = run(spec, model, tmp_path)
    assert report["balance"]["before"] == {"positive": 0, "negative": 4}
    assert report["balance"]["missingLabels"] == ["positive"]
    assert report["missingLabels"] == ["positive"]
    assert len(train) == 4


def test_input_generation_killed_after_a_round_resumes_from_it_with_the_same_result(tmp_path):
    uninterrupted = run(generation_spec(), generation_model(), tmp_path / "whole")

    def dies_in_round_two(r: int, k: int, label: str | None) -> str:
        if r == 1:
            raise KeyboardInterrupt  # the pod killed mid-round
        return GENERATION_INPUTS[r][k]

    checkpoint = tmp_path / "checkpoints" / "inputs.json"
    with pytest.raises(KeyboardInterrupt):
        run_generate(generation_spec(), ScriptedModel(dies_in_round_two), tmp_path / "first", checkpoint)
    assert json.loads(checkpoint.read_text())["rounds"] == 1
    resumed = ScriptedModel(lambda r, k, label: GENERATION_INPUTS[r + 1][k], lambda text: GENERATION_ANSWERS[text])
    run_generate(generation_spec(), resumed, tmp_path / "second", checkpoint)
    assert len(resumed.input_rounds) == 1  # only the round that was lost is generated again
    second = tmp_path / "second"
    assert json.loads((second / FILTER_REPORT_FILE).read_text()) == uninterrupted[0]
    assert [json.loads(line) for line in (second / CANDIDATES_FILE).read_text().splitlines()] == uninterrupted[1]
    assert [json.loads(line) for line in (second / TRAIN_FILE).read_text().splitlines()] == uninterrupted[2]


def test_a_checkpoint_of_another_config_is_ignored(tmp_path):
    checkpoint = tmp_path / "inputs.json"
    run_generate(generation_spec(seed=7), generation_model(), tmp_path / "a", checkpoint)
    model = generation_model()
    run_generate(generation_spec(), model, tmp_path / "b", checkpoint)
    assert len(model.input_rounds) == 2


def test_inputs_seeded_from_another_run_are_annotated_anew_without_generating_any(tmp_path):
    first = run(generation_spec(), generation_model(), tmp_path / "first")
    stricter = spec_for(GENERATION_TASK, inputs={"maxRounds": 2, "promptsPerRound": 5},
                        annotation={"samples": 6, "keep": 4, "minAgreement": 0.9})
    assert inputs_settings(stricter) == inputs_settings(generation_spec()) != inputs_settings(generation_spec(seed=7))
    checkpoint = tmp_path / "checkpoints" / "inputs.json"
    assert seed_inputs(stricter, tmp_path / "first", checkpoint) == first[0]["inputs"]["kept"]

    def never(r: int, k: int, label: str | None) -> str:
        raise AssertionError("input generation ran")

    report, rows, train = run_with_checkpoint(stricter, ScriptedModel(never, lambda text: GENERATION_ANSWERS[text]),
                                              tmp_path / "second", checkpoint)
    assert [(r["input"], r["round"], r.get("reason")) for r in rows if r["droppedAt"] == "input"] == [
        (r["input"], r["round"], r.get("reason")) for r in first[1] if r["droppedAt"] == "input"]
    assert [r["input"] for r in rows] == [r["input"] for r in first[1]]
    assert report["prompts"] == first[0]["prompts"] and report["inputs"] == first[0]["inputs"]
    # the stricter agreement (0.9) keeps only the unanimous answers that the first run's 0.3 kept among others
    assert {t["input"] for t in train} == {"a b c d e", "left right"} < {t["input"] for t in first[2]}


def test_input_settings_include_annotation_when_inputs_are_steered_by_it():
    fill = {"maxRounds": 2, "labelSampling": "fill"}
    steered = [spec_for(CLASSIFICATION_TASK, inputs=fill, annotation={"samples": n, "keep": 2}) for n in (2, 3)]
    assert inputs_settings(steered[0]) != inputs_settings(steered[1])
    uniform = [spec_for(CLASSIFICATION_TASK, annotation={"samples": n, "keep": 2}) for n in (2, 3)]
    assert inputs_settings(uniform[0]) == inputs_settings(uniform[1])


def test_a_generate_stage_killed_mid_run_resumes_from_its_last_round_through_the_runner(tmp_path, monkeypatch):
    """The runner's checkpoint directory survives the crash (it is deleted only once the stage commits), and
    the next attempt of `generate` regenerates only the round that was lost."""
    from selfguide.runner import run_stage
    from selfguide.stages import backend

    def dies_in_round_two(r: int, k: int, label: str | None) -> str:
        if r == 1:
            raise KeyboardInterrupt  # the pod killed mid-round (SIGTERM of a Kueue suspension, a preemption)
        return GENERATION_INPUTS[r][k]

    first = ScriptedModel(dies_in_round_two)
    monkeypatch.setattr(backend, "open_backend", lambda *args, **kwargs: first)
    with pytest.raises(KeyboardInterrupt):
        run_stage(generation_spec(), tmp_path, "generate")
    assert list(tmp_path.glob(".checkpoints/generate-*/inputs.json"))
    resumed = ScriptedModel(lambda r, k, label: GENERATION_INPUTS[r + 1][k], lambda text: GENERATION_ANSWERS[text])
    monkeypatch.setattr(backend, "open_backend", lambda *args, **kwargs: resumed)
    outcome = run_stage(generation_spec(), tmp_path, "generate")
    assert len(first.input_rounds) == 2 and len(resumed.input_rounds) == 1  # round 1 was not generated again
    assert outcome.result.examples == 3
    assert not list(tmp_path.glob(".checkpoints/generate-*"))  # committed: the checkpoints are gone
