"""The `evaluate` stage: few-shot prompting of the base model versus base + adapter, on a held-out set.

Both models get the same few-shot chat prompt and greedy decoding; with LoRA one model load serves both
(the adapter is switched off for the baseline). Writes report.json, report.md and PNG plots.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from selfguide.artifacts import read_jsonl
from selfguide.contract import progress
from selfguide.contract.environment import pvc_local_path
from selfguide.contract.errors import PermanentError
from selfguide.contract.evaluation_report import (
    Answer,
    Baselines,
    EvaluationReport,
    LabelCounts,
    Prediction,
    SelfIcl,
)
from selfguide.contract.filter_report import FilterReport
from selfguide.contract.findings import AnnotatorAccuracy, findings, label_counts
from selfguide.contract.intervals import paired_interval
from selfguide.contract.layout import (
    ADAPTER_DIR,
    CANDIDATES,
    FILTER_REPORT,
    MODEL_DIR,
    REPORT_FILE,
    TRAIN_DATA,
    trained_model_dir,
)
from selfguide.contract.results import EvaluateResult, judge
from selfguide.engine.backends.base import GenerationBackend, SamplingParams
from selfguide.engine.models import locate
from selfguide.engine.trainer import train
from selfguide.prompts import few_shot_messages
from selfguide.spec import EvalExample, Example, SelfGuideJobSpec, TaskType, TrainingMethod
from selfguide.spec.evaluation import EvaluationMethod, EvaluationSpec
from selfguide.spec.generation import Calibration
from selfguide.spec.problems import problems_from
from selfguide.spec.uris import is_pvc
from selfguide.stages.backend import opened
from selfguide.stages.context import StageContext
from selfguide.stages.evaluate.readable import write_readable_report
from selfguide.stages.evaluate.scoring import EXACT_MATCH, ROUGE_L, exact_match, extract_label, mean, rouge_l
from selfguide.stages.evaluate.self_icl import demonstrations
from selfguide.stages.generate.annotator_accuracy import measure
from selfguide.stages.generate.labels import calibrate, decide, label_means
from selfguide.text import normalize_answer


def preflight(spec: SelfGuideJobSpec) -> None:
    """Before a job's first stage: the evaluation set can be read (a bad one fails the job in seconds)."""
    if spec.evaluation is not None:
        load_eval_set(spec.evaluation)


def load_eval_set(spec: EvaluationSpec) -> list[EvalExample]:
    """The evaluation examples, inline or from a JSONL file; bad data is a permanent error naming the line."""
    if spec.examples is not None:
        examples = list(spec.examples)
    else:
        assert spec.path is not None
        path = pvc_local_path(spec.path) if is_pvc(spec.path) else Path(spec.path)
        if not path.is_file():
            raise PermanentError(f"spec.evaluation.path: {spec.path} does not exist")
        examples = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                examples.append(EvalExample.model_validate(json.loads(line)))
            except ValidationError as error:
                first = "; ".join(map(str, problems_from(error)))
                raise PermanentError(f"spec.evaluation.path: {spec.path} line {number}: {first}") from None
            except ValueError as error:
                first = str(error).splitlines()[0]
                raise PermanentError(f"spec.evaluation.path: {spec.path} line {number}: {first}") from None
        if not examples:
            raise PermanentError(f"spec.evaluation.path: {spec.path} holds no examples")
    return examples[: spec.max_examples] if spec.max_examples else examples


class Scorer:
    """The task's metric for one answer."""

    def __init__(self, spec: SelfGuideJobSpec, examples: list[EvalExample]) -> None:
        self.classification = spec.task.type is TaskType.CLASSIFICATION
        self.metric = EXACT_MATCH if self.classification else ROUGE_L
        self.labels = set(spec.task.labels or []) | {e.output for e in examples} | {e.output for e in spec.task.examples}
        # one spelling per label that scores alike, the task's own first
        spellings = [*(spec.task.labels or []), *sorted(self.labels)]
        self.spelling = {normalize_answer(label): label for label in reversed(spellings)}

    def __call__(self, answer: str, example: EvalExample) -> float:
        if self.classification:
            return exact_match(answer, example.output, self.labels)
        return rouge_l(answer, example.outputs or [example.output])

    def label(self, answer: str) -> str | None:
        """Classification: the label `answer` names (as exact match reads it), spelled as the task does."""
        found = extract_label(answer, self.labels)
        return None if found is None else self.spelling.get(normalize_answer(found), found)


def predict(backend: GenerationBackend, spec: SelfGuideJobSpec, examples: list[EvalExample], desc: str,
            demonstrations: Sequence[Example] | None = None) -> list[str]:
    """Every example's answer to the few-shot prompt (the gold examples, or `demonstrations`): greedy decoding,
    or with `evaluation.method: likelihood` the best label (calibrated over these examples when asked)."""
    assert spec.evaluation is not None
    prompts = [backend.render_chat(few_shot_messages(spec.task, e.input, demonstrations)) for e in examples]
    if spec.evaluation.method is EvaluationMethod.LIKELIHOOD:
        return rank_labels(backend, spec, prompts, desc)
    params = SamplingParams(temperature=0.0, max_tokens=spec.evaluation.max_new_tokens)
    # no completion: the backend skipped a prompt longer than the model's context window (scored as empty)
    answers: list[str] = []
    # in chunks, so that progress moves (greedy answers are those of one call, up to how a batch is padded)
    for chunk in progress.chunks(len(prompts)):
        completions = backend.generate(prompts[chunk], params, desc=desc)
        answers += [c[0].text.strip() if c else "" for c in completions]
        _scored(len(completions))
    return answers


def rank_labels(backend: GenerationBackend, spec: SelfGuideJobSpec, prompts: list[str], desc: str) -> list[str]:
    """Rank classification: per prompt the label whose log-probability as the whole reply is highest, after
    subtracting each label's mean over all `prompts` with `calibration: batch`; "" where the backend skipped a
    prompt longer than the model's context window."""
    assert spec.evaluation is not None and spec.task.labels is not None
    labels = list(spec.task.labels)
    table: list[dict[str, float] | None] = []
    for chunk in progress.chunks(len(prompts)):
        rows = backend.score_answers(prompts[chunk], labels, desc=desc)
        table += [dict(zip(labels, row)) if row else None for row in rows]
        _scored(len(rows))
    scored = [row for row in table if row is not None]
    means = label_means(scored) if spec.evaluation.calibration is Calibration.BATCH else {}
    return ["" if row is None else decide(calibrate(row, means)).label for row in table]


def _scored(items: int) -> None:
    """Progress: `items` more answers (one call's; chunks keep progress moving)."""
    tracker = progress.current()
    done, total = (tracker.snapshot.items_scored or 0) + items, tracker.snapshot.items_total
    tracker.update(done / total if total else None, items_scored=done)


def systems(spec: SelfGuideJobSpec) -> int:
    """How many systems the evaluation scores (each answers every example)."""
    assert spec.evaluation is not None
    return 2 + spec.evaluation.self_icl_baseline + spec.evaluation.few_shot_finetune_baseline


def _open(spec: SelfGuideJobSpec, items: int, adapter: Path | None = None,
          model_dir: Path | None = None) -> contextlib.AbstractContextManager[GenerationBackend]:
    """The backend that answers `items` evaluation items with every system this stage scores on it."""
    assert spec.evaluation is not None
    return opened(spec, spec.evaluation.batch_size, items * systems(spec), adapter, model_dir)


def _base_model(ctx: StageContext, backend: GenerationBackend, examples: list[EvalExample],
                predictions: dict[str, list[str]]) -> SelfIcl | None:
    """The systems that prompt the base model: few-shot prompting, and Self-ICL when asked for (how its prompt
    was built comes back)."""
    spec = ctx.spec
    assert spec.evaluation is not None
    predictions["fewShotPrompting"] = predict(backend, spec, examples, "evaluating base model")
    if spec.evaluation.self_icl_baseline:
        generated = [Example.model_validate(row) for row in read_jsonl(ctx.artifact(TRAIN_DATA))]
        shown = demonstrations(backend, spec, examples, generated, spec.generation.max_prompt_tokens)
        predictions["selfIcl"] = predict(backend, spec, examples, "evaluating Self-ICL", shown.examples)
        return SelfIcl(generated_demonstrations=shown.generated, prompt_tokens=shown.prompt_tokens,
                       budget=spec.generation.max_prompt_tokens)
    return None


def run_models(ctx: StageContext, examples: list[EvalExample]) -> tuple[dict[str, list[str]], Baselines | None]:
    """Predictions of every compared system, keyed by system name, and how the baselines were built."""
    spec = ctx.spec
    predictions: dict[str, list[str]] = {}
    trained = ctx.artifact(trained_model_dir(spec.training.method))
    if spec.training.method is TrainingMethod.LORA:
        with _open(spec, len(examples), adapter=trained) as backend:
            with backend.adapter_disabled():
                self_icl = _base_model(ctx, backend, examples, predictions)
            predictions["selfGuide"] = predict(backend, spec, examples, "evaluating fine-tuned model")
    else:
        with _open(spec, len(examples)) as backend:
            self_icl = _base_model(ctx, backend, examples, predictions)
        with _open(spec, len(examples), model_dir=trained) as backend:
            predictions["selfGuide"] = predict(backend, spec, examples, "evaluating the fine-tuned model")
    if spec.evaluation and spec.evaluation.few_shot_finetune_baseline:
        predictions["fewShotFinetuning"] = _few_shot_finetune(ctx, examples)
    return predictions, None if self_icl is None else Baselines(self_icl=self_icl)


def _few_shot_finetune(ctx: StageContext, examples: list[EvalExample]) -> list[str]:
    """The paper's baseline: the same fine-tuning on the gold examples alone."""
    spec = ctx.spec
    out = ctx.output / "few_shot_finetune"
    train(locate(spec.model), spec.model, spec.task, spec.training, spec.task.examples, out,
          checkpoint_dir=ctx.checkpoints / "few-shot-finetune", base_model_name=spec.model.name)
    lora = spec.training.method is TrainingMethod.LORA
    with _open(spec, len(examples), adapter=out / ADAPTER_DIR if lora else None,
               model_dir=None if lora else out / MODEL_DIR) as backend:
        return predict(backend, spec, examples, "evaluating few-shot fine-tuning")


def metric_variant(spec: EvaluationSpec | None, classification: bool) -> str:
    """How the metric was computed, as the report states it."""
    if not classification:
        return "token ROUGE-L F1 (rouge-score, Porter stemmer), best over references"
    if spec is None or spec.method is EvaluationMethod.GENERATE:
        return "exact match after SNI normalisation of the last label occurring in the answer"
    calibrated = " after batch calibration over the evaluation inputs" if spec.calibration is Calibration.BATCH else ""
    return f"exact match of the label ranked most likely (rank classification){calibrated}"


def score_report(spec: SelfGuideJobSpec, examples: list[EvalExample], predictions: dict[str, list[str]],
                 training: list[Example], annotator: AnnotatorAccuracy | None = None) -> EvaluationReport:
    """Every system's scores on `examples`; for classification, the label counts and the `Findings` of the
    classifier tuned on `training` (and of the `annotator`, when measured)."""
    scorer = Scorer(spec, examples)
    scores = {name: [scorer(a, e) for a, e in zip(answers, examples)] for name, answers in predictions.items()}
    labels = {name: [scorer.label(a) if scorer.classification else None for a in answers]
              for name, answers in predictions.items()}
    baseline, finetuned = mean(scores["fewShotPrompting"]), mean(scores["selfGuide"])
    rows = [Prediction.model_validate({"input": example.input, "gold": example.output} | {
        name: Answer(answer=predictions[name][i], score=scores[name][i], label=labels[name][i]) for name in predictions})
        for i, example in enumerate(examples)]
    counts = found = None
    if scorer.classification:
        gold = [scorer.label(e.output) or e.output for e in examples]
        trained = [scorer.label(e.output) or e.output for e in training]
        counts = LabelCounts(gold=label_counts(gold), training=label_counts(trained),
                             answers={name: label_counts(answers) for name, answers in labels.items()})
        found = findings(trained, labels["selfGuide"], gold, annotator.finding() if annotator else None)
    return EvaluationReport(
        metric=scorer.metric,
        metric_variant=metric_variant(spec.evaluation, scorer.classification),
        examples=len(examples),
        scores={name: round(mean(values), 2) for name, values in scores.items()},
        baseline=round(baseline, 2), finetuned=round(finetuned, 2), delta=round(finetuned - baseline, 2),
        predictions=rows, labels=counts, annotator=annotator, findings=found)


def run(ctx: StageContext) -> EvaluateResult:
    spec = ctx.spec
    assert spec.evaluation is not None
    examples = load_eval_set(spec.evaluation)
    progress.current().update(0.0, items_scored=0, items_total=len(examples) * systems(spec))
    predictions, baselines = run_models(ctx, examples)
    annotator = measure(spec, examples) if spec.evaluation.annotator_accuracy else None
    generated = read_jsonl(ctx.artifact(TRAIN_DATA))
    report = score_report(spec, examples, predictions, [Example.model_validate(row) for row in generated], annotator)
    gate_spec = spec.evaluation.gate
    report = report.model_copy(update={
        "baselines": baselines,
        "gate": None if gate_spec is None else judge(
            gate_spec.min_improvement, report.item_scores("fewShotPrompting"), report.item_scores("selfGuide"),
            gate_spec.confidence, report.findings.collapse if report.findings else None)})
    report.write(ctx.output / REPORT_FILE)
    funnel = FilterReport.read(ctx.artifact(FILTER_REPORT))
    candidates = read_jsonl(ctx.artifact(CANDIDATES)) if ctx.artifact(CANDIDATES).is_file() else []
    write_readable_report(spec, report, generated, funnel, ctx.output, candidates)
    differences = [f - b for b, f in zip(report.item_scores("fewShotPrompting"), report.item_scores("selfGuide"),
                                         strict=True)]
    return EvaluateResult(metric=report.metric, examples=report.examples, baseline=report.baseline,
                          finetuned=report.finetuned, delta=report.delta,
                          interval=[round(v, 2) for v in paired_interval(differences, 0.95)], scores=report.scores,
                          gate=report.gate, findings=report.findings)
