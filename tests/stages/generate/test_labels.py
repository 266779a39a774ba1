"""Beyond the paper's vote: label likelihood, batch calibration, the margin and pseudo-label agreement
filters, label sampling that fills short classes, pool inputs shown by label, and cleaner inputs (scaffolding, normalised duplicates,
foreign scripts).
A scripted model stands in for the language model (see test_generator.ScriptedModel)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from selfguide.contract.results import GenerateResult
from selfguide.stages.generate.filters import DuplicateFilter, ScaffoldingFilter, ScriptFilter
from selfguide.stages.generate.labels import calibrate, decide, draw_labels, fill_weights, label_means
from tests.stages.generate.test_generator import (
    CLASSIFICATION_TASK,
    ScriptedModel,
    label_of,
    low_quality,
    run,
    spec_for,
)

LABELS = ["positive", "negative"]


# -- calibration and decisions (pure) ------------------------------------------------------------------

def test_batch_calibration_removes_a_label_prior():
    # the model prefers "positive" by 2 nats everywhere; what differs between inputs is +-0.5
    table = [{"positive": -1.0 + d, "negative": -3.0 - d} for d in (0.5, -0.5, 0.4, -0.6)]
    assert [decide(row).label for row in table] == ["positive"] * 4  # uncalibrated: the prior wins
    means = label_means(table)
    assert means == pytest.approx({"positive": -1.05, "negative": -2.95})
    calibrated = [decide(calibrate(row, means)) for row in table]
    assert [d.label for d in calibrated] == ["positive", "negative", "positive", "negative"]
    assert calibrated[0].margin == pytest.approx(1.1)


def test_decide_breaks_ties_by_label_order_and_reports_the_margin():
    assert decide({"a": -1.0, "b": -1.0}) == decide({"a": -1.0, "b": -1.0})
    assert decide({"a": -1.0, "b": -1.0}).label == "a" and decide({"a": -1.0, "b": -1.0}).margin == 0.0
    assert decide({"a": -2.0, "b": -0.5, "c": -1.0}).margin == pytest.approx(0.5)


def test_fill_weights_favour_the_labels_short_of_examples():
    assert fill_weights(LABELS, {"positive": 9, "negative": 2}) == [1, 8]
    assert fill_weights(LABELS, {}) == [1, 1]
    drawn = Counter(draw_labels(random.Random(0), LABELS, 1000, {"positive": 9, "negative": 0}))
    assert drawn["negative"] > 8 * drawn["positive"]
    uniform = Counter(draw_labels(random.Random(0), LABELS, 1000, None))
    assert 400 < uniform["negative"] < 600


# -- likelihood annotation through the generate stage ----------------------------------------------------

def review(k: int) -> str:
    return f"review number {k}"


def likelihood_run(tmp_path, score, **annotation):
    model = ScriptedModel(lambda r, k, label: review(k), score=score)
    spec = spec_for(CLASSIFICATION_TASK, inputs={"maxRounds": 1, "promptsPerRound": 8},
                    annotation={"method": "likelihood", **annotation},
                    filtering={"inputLength": {"enabled": False}, "balanceClasses": False})
    return model, *run(spec, model, tmp_path)


def biased_score(text: str, label: str) -> float:
    """A model that prefers "positive" by 3 nats, and leans to "negative" on odd reviews by 1 nat."""
    odd = int(text.rsplit(" ", 1)[1]) % 2
    return {"positive": -1.0, "negative": -4.0 + (1.0 if odd else -1.0)}[label]


def test_likelihood_picks_the_label_the_model_prefers(tmp_path):
    model, report, rows, train = likelihood_run(tmp_path, lambda text, label: -0.1 if label == "negative" else -2.0)
    assert len(model.scored) == 8 and not model.annotation_calls  # scored, never sampled
    assert [t["output"] for t in train] == ["negative"] * 8
    assert all(r["scores"] == {"positive": -2.0, "negative": -0.1} and r["margin"] == pytest.approx(1.9)
               for r in rows)
    assert report["annotation"]["method"] == "likelihood"


def test_batch_calibration_turns_a_one_label_annotator_into_a_two_label_one(tmp_path):
    _, _, _, plain = likelihood_run(tmp_path / "plain", biased_score)
    assert {t["output"] for t in plain} == {"positive"}
    _, report, _, calibrated = likelihood_run(tmp_path / "batch", biased_score, calibration="batch")
    assert [t["output"] for t in calibrated] == ["positive", "negative"] * 4
    assert report["annotation"]["calibration"] == "batch"
    assert report["annotation"]["labelMeans"] == {"positive": -1.0, "negative": -4.0}


def test_a_minimum_margin_drops_and_counts_the_uncertain(tmp_path):
    def score(text: str, label: str) -> float:
        k = int(text.rsplit(" ", 1)[1])
        return {"positive": -1.0, "negative": -1.0 - 0.2 * k}[label]  # margin 0.2 k

    _, report, rows, train = likelihood_run(tmp_path, score, minMargin=0.7)
    assert len(train) == 4  # k = 4..7
    assert report["annotation"]["dropped"] == {"margin": {"low_margin": 4}}
    assert all(r["margin"] < 0.7 for r in rows if r["droppedAt"] == "annotation")


# -- agreement with the pseudo-label ---------------------------------------------------------------------

def test_requiring_the_pseudo_label_drops_disagreements_under_their_own_reason(tmp_path):
    model = ScriptedModel(lambda r, k, label: f"{label} review {k}", lambda text: ["negative"] * 3)
    spec = spec_for(CLASSIFICATION_TASK, inputs={"maxRounds": 1, "promptsPerRound": 10},
                    annotation={"samples": 3, "keep": 3, "requirePseudoLabel": True},
                    filtering={"inputLength": {"enabled": False}, "balanceClasses": False})
    report, rows, train = run(spec, model, tmp_path)
    wanted_positive = sum(r["pseudoLabel"] == "positive" for r in rows)
    assert 0 < wanted_positive < 10
    assert report["annotation"]["dropped"] == {"agreement": {"disagrees_with_pseudo_label": wanted_positive}}
    assert all(t["output"] == "negative" and t["input"].startswith("negative") for t in train)


# -- label sampling that fills the classes ---------------------------------------------------------------

def test_fill_sampling_asks_for_the_label_the_annotator_rarely_gives(tmp_path):
    """The annotator says "negative" unless the input was written for "positive" (then 1 in 2): uniform
    sampling makes 3 negatives per positive; filling asks for "positive" until the classes even out."""
    def annotate(text: str) -> list[str]:
        label, k = text.split(" review ")
        return ["positive" if label == "positive" and int(k) % 2 == 0 else "negative"] * 3

    def generate(sampling: str, out):
        model = ScriptedModel(lambda r, k, label: f"{label} review {r * 100 + k}", annotate)
        spec = spec_for(CLASSIFICATION_TASK, inputs={"maxRounds": 6, "promptsPerRound": 10, "labelSampling": sampling},
                        annotation={"samples": 3, "keep": 3}, filtering={"inputLength": {"enabled": False}})
        report, _, train = run(spec, model, out)
        asked = Counter(label_of(p) for prompts in model.input_rounds for p in prompts)
        return report, train, asked

    uniform_report, uniform_train, uniform_asked = generate("uniform", tmp_path / "uniform")
    fill_report, fill_train, fill_asked = generate("fill", tmp_path / "fill")
    assert fill_asked["positive"] > uniform_asked["positive"] + 10
    assert fill_report["balance"]["before"]["positive"] > uniform_report["balance"]["before"]["positive"]
    assert len(fill_train) > len(uniform_train)  # balancing keeps more of what was made


def test_same_label_pool_selection_shows_only_inputs_annotated_with_the_label_asked_for(tmp_path):
    """The annotator labels an input by the word it starts with, which is the label it was written for on
    every third input and the other label otherwise."""
    def write(r: int, k: int, label: str | None) -> str:
        other = LABELS[1 - LABELS.index(label or LABELS[0])]
        return f"{label if k % 3 == 0 else other} review {r * 100 + k}"

    def shown(selection: str, out) -> list[tuple[str | None, list[str]]]:
        model = ScriptedModel(write, lambda text: [text.split()[0]] * 3)
        spec = spec_for(CLASSIFICATION_TASK, inputs={"maxRounds": 4, "promptsPerRound": 10, "poolSelection": selection},
                        annotation={"samples": 3, "keep": 3}, filtering={"inputLength": {"enabled": False}})
        run(spec, model, out)
        return [(label_of(p), low_quality(p) or []) for prompts in model.input_rounds[1:] for p in prompts]

    same = shown("sameLabel", tmp_path / "same")
    assert all(text.split()[0] == label for label, pool in same for text in pool)
    assert sum(len(pool) for _, pool in same) >= 30  # the pool is used, not emptied
    mixed = shown("random", tmp_path / "random")
    assert any(text.split()[0] != label for label, pool in mixed for text in pool)


def test_a_missing_label_reaches_the_stage_result_line():
    result = GenerateResult(examples=4, candidates=4, missing_labels=["positive"])
    assert result.line().endswith("; no example of positive")


# -- cleaner inputs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "The [original prompt] has been successfully executed.",  # seen in the demo's training set
    "They're [new] positive thoughts on their own.",
    "As an InputGenerator, here is a new review.",
])
def test_scaffolding_is_dropped(text):
    assert ScaffoldingFilter(["The battery lasts all day.", "It broke after two days."]).reason(text) is not None


def test_placeholders_the_gold_inputs_use_are_task_text():
    gold = ["Sentence 1: [A] likes [B]. Sentence 2: ..."]
    assert ScaffoldingFilter(gold).reason("Sentence 1: [a] hates [b]. Sentence 2: no") is None
    assert ScaffoldingFilter(gold).reason("Sentence 1: [C] hates [b].") == "placeholder"


def test_a_gold_input_with_a_stray_quote_is_a_normalised_duplicate():
    duplicates = DuplicateFilter()
    duplicates.add("The battery lasts all day.")
    assert duplicates.reason('The battery lasts all day.",') == "normalized_duplicate"  # seen in the demo
    assert duplicates.reason("  the battery LASTS all day ") == "normalized_duplicate"
    assert duplicates.reason("The battery  lasts all day.") == "duplicate"
    assert duplicates.reason("The battery lasts all week.") is None


AG_NEWS_GOLD = ["Oil and Economy Cloud Stocks' Outlook  NEW YORK (Reuters) - Soaring crude prices plus worries",
                "Russian FM meets with Katsav Russian Foreign Minister Sergey Lavrov met Monday with Israeli"]


@pytest.mark.parametrize("text", [
    # written by the bundled model in paper-budget AG News runs, which then pooled them and wrote more
    "Видаль до програмm марнах 17мерсить журнал в Биболисьбару, 2017-12-19, 2017-12-19, 2017, 2017",
    "Отследжа с дворячикими комиссии, как конкуратив написанию, как однокудой связаны",
])
def test_text_mostly_in_a_script_the_gold_texts_do_not_use_is_dropped(text):
    assert ScriptFilter(AG_NEWS_GOLD).reason(text) == "foreign_script"


@pytest.mark.parametrize("text", [
    "Putin met Лавров in Moscow on Monday to discuss oil prices and the economy",  # a foreign name
    "Café owners in São Paulo protest a new tax",  # accents are Latin
    "2004-08-12 12:00",  # no letters
])
def test_text_mostly_in_the_gold_script_is_kept(text):
    assert ScriptFilter(AG_NEWS_GOLD).reason(text) is None


def test_gold_texts_in_another_script_make_it_the_known_one():
    russian = ScriptFilter(["Нефть дорожает на фоне новостей"])
    assert russian.reason("Рынки растут") is None
    assert russian.reason("Markets rise on oil news") == "foreign_script"
    assert ScriptFilter(["1 + 2", "3 * 4"]).reason("Рынки растут") is None  # gold without letters: nothing known


def test_foreign_script_inputs_are_counted_and_never_pooled(tmp_path):
    def script(r, k, label):
        return ["Рынки растут на фоне новостей", f"a fine review number {r} {k}"][k % 2]

    spec = spec_for(CLASSIFICATION_TASK, inputs={"maxRounds": 2, "promptsPerRound": 2},
                    filtering={"inputLength": {"enabled": False}})
    model = ScriptedModel(script)
    report, _, _ = run(spec, model, tmp_path)
    assert report["inputs"]["dropped"]["script"] == {"foreign_script": 2}
    second_round = model.input_rounds[1]
    shown = [low_quality(prompt) for prompt in second_round]
    assert all(texts and not any("Рынки" in text for text in texts) for texts in shown)
