"""The `generate` stage: self-synthesized inputs, self-annotated outputs, rule-based filters.

Writes (into the stage directory):
  train.jsonl          the training set, `{"input", "output"}` per line
  candidates.jsonl     every generated input with where and why it was dropped (or `kept`)
  filter_report.json   counts per filter and reason, which add up to the candidates
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfguide.artifacts import atomic_write_json, atomic_write_jsonl, config_hash, read_jsonl
from selfguide.contract import progress
from selfguide.contract.filter_report import BalanceStep, Drops, FilterReport, Prompts, Step
from selfguide.contract.layout import CANDIDATES_FILE, FILTER_REPORT_FILE, TRAIN_FILE
from selfguide.contract.results import GenerateResult
from selfguide.engine.backends.base import EXCEEDS_CONTEXT, GenerationBackend, SamplingParams
from selfguide.prompts import (
    INPUT_RESPONSE_PREFIX,
    INPUT_STOP,
    extract_input,
    input_generation_prompt,
)
from selfguide.spec import SelfGuideJobSpec, TaskType
from selfguide.spec.generation import AnnotationMethod, LabelSampling, LengthFilterSpec, PoolSelection
from selfguide.stages.backend import opened
from selfguide.stages.context import StageContext
from selfguide.stages.generate.annotate import Annotator
from selfguide.stages.generate.candidates import Candidate, PromptStats
from selfguide.stages.generate.filters import (
    DuplicateFilter,
    EmptyFilter,
    LengthBand,
    LengthFilter,
    NearDuplicateFilter,
    NoiseFilter,
    ScaffoldingFilter,
    ScriptFilter,
    TextFilter,
    first_failure,
    length_band,
)
from selfguide.stages.generate.labels import draw_labels

log = logging.getLogger(__name__)

INPUTS_CHECKPOINT = "inputs.json"
"""Input generation's per-round state in the stage's checkpoint directory."""


def _text_filters(spec: SelfGuideJobSpec, gold: list[str], length: LengthFilterSpec, length_default: bool) -> list[TextFilter]:
    """Empty, length (against the gold texts) and noise filters, as configured."""
    filtering = spec.generation.filtering
    chain: list[TextFilter] = [EmptyFilter()]
    if length.enabled_for(length_default):
        chain.append(LengthFilter(length_band(gold, length.sigmas, length.min_spread)))
    if filtering.noise:
        chain.append(NoiseFilter(filtering.noise_terms))
    if filtering.script:
        chain.append(ScriptFilter(gold))
    return chain


def _input_filters(spec: SelfGuideJobSpec) -> tuple[list[TextFilter], list[DuplicateFilter | NearDuplicateFilter]]:
    """The input filter chain, and the filters that must learn about every accepted input."""
    filtering = spec.generation.filtering
    gold = [e.input for e in spec.task.examples]
    memory: list[DuplicateFilter | NearDuplicateFilter] = []
    if filtering.duplicates:
        memory.append(DuplicateFilter())
    if filtering.near_duplicates.enabled:
        memory.append(NearDuplicateFilter(filtering.near_duplicates.threshold))
    for f in memory:
        for text in gold:
            f.add(text)
    scaffolding: list[TextFilter] = [ScaffoldingFilter(gold)] if filtering.scaffolding else []
    return _text_filters(spec, gold, filtering.input_length, True) + scaffolding + memory, memory


def input_char_limit(band: LengthBand) -> int:
    """Where input generation stops decoding a completion: past the band, whose inputs the length filter drops
    (+1: the closing quote `extract_input` removes)."""
    return math.floor(band.high) + 1


def output_filters(spec: SelfGuideJobSpec) -> list[TextFilter]:
    """Filters on each annotation sample; the length filter defaults to on for generation tasks only."""
    gold = [e.output for e in spec.task.examples]
    return _text_filters(spec, gold, spec.generation.filtering.output_length,
                         spec.task.type is TaskType.GENERATION)


def _label_feedback(spec: SelfGuideJobSpec) -> tuple[bool, bool]:
    """Whether input generation asks for the labels short of annotated examples (`fill`), and whether it shows
    pool inputs annotated with the label asked for (`sameLabel`): either makes it depend on annotation."""
    inputs, labelled = spec.generation.inputs, bool(spec.task.labels)
    return (inputs.label_sampling is LabelSampling.FILL and labelled,
            inputs.pool_selection is PoolSelection.SAME_LABEL and labelled)


def inputs_settings(spec: SelfGuideJobSpec) -> dict[str, Any]:
    """What input generation depends on: the task, the model and the generation settings, less annotation's
    unless inputs are annotated round by round. Runs with the same settings generate the same inputs."""
    generation = spec.generation.to_camel_dict()
    if not any(_label_feedback(spec)):
        del generation["annotation"]
    return {"task": spec.task.to_camel_dict(), "model": spec.model.to_camel_dict(), "generation": generation}


def _write_inputs_state(path: Path, spec: SelfGuideJobSpec, rounds: int, rng: random.Random, prompts: PromptStats,
                        candidates: list[Candidate], pool: list[str]) -> None:
    """Input generation's state after `rounds` rounds, written atomically (a kill mid-write leaves the previous
    one)."""
    version, internal, gauss = rng.getstate()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {
        "config": config_hash(inputs_settings(spec)), "rounds": rounds, "rng": [version, list(internal), gauss],
        "prompts": {"built": prompts.built, "trimmed": prompts.trimmed, "skipped": dict(prompts.skipped)},
        "candidates": [vars(c) for c in candidates], "pool": pool})


def seed_inputs(spec: SelfGuideJobSpec, source: Path, checkpoint: Path) -> int:
    """Write as `checkpoint` the finished input generation of another run with the same `inputs_settings` (its
    generate stage directory `source`): every generated input and its input filters' verdict, annotation and
    balancing undone. The run then resumes after the last round and goes straight to annotation; only the draw
    of class balancing differs from a run that generated them itself. Returns the number of inputs kept."""
    rows = read_jsonl(source / CANDIDATES_FILE)
    candidates = [Candidate(row["input"], row["round"], row.get("pseudoLabel")) for row in rows]
    for candidate, row in zip(candidates, rows):
        if row.get("droppedAt") == "input":
            candidate.drop("input", row["filter"], row["reason"])
    prompts = FilterReport.read(source / FILTER_REPORT_FILE).prompts
    pool = [c.input for c in candidates if c.dropped_at == "kept"]
    _write_inputs_state(checkpoint, spec, spec.generation.inputs.rounds_for(spec.task.type),
                        random.Random(spec.generation.seed),
                        PromptStats(prompts.built, prompts.trimmed, Counter(prompts.skipped)), candidates, pool)
    return len(pool)


class Generator:
    """Runs input generation and annotation for one spec with one loaded backend."""

    def __init__(self, spec: SelfGuideJobSpec, backend: GenerationBackend, checkpoint: Path | None = None) -> None:
        self.spec = spec
        self.backend = backend
        self.checkpoint = checkpoint
        """Where input generation saves its state after every round, and resumes from after a crash."""
        self.rng = random.Random(spec.generation.seed)
        self.prompts = PromptStats()
        self.annotator = Annotator(spec, backend, output_filters(spec))
        self.fill, self.same_label = _label_feedback(spec)
        self.annotate_each_round = self.fill or self.same_label
        """Both need the labels of the inputs made so far."""

    # -- input generation ---------------------------------------------------------------------------------
    def _fit_input_prompt(self, gold: list[str], pool: list[str], label: str | None,
                          pool_labels: dict[str, str] | None = None) -> str | None:
        """A rendered input-generation prompt within the token budget, dropping pool examples as needed;
        with `pool_labels`, only pool inputs annotated `label` are shown."""
        cfg = self.spec.generation.inputs
        if pool_labels is not None:
            pool = [text for text in pool if pool_labels.get(text) == label]
        k = self.rng.randint(min(cfg.min_pool_examples, len(pool)), min(cfg.max_pool_examples, len(pool))) if pool else 0
        shown = self.rng.sample(pool, k)
        budget = self.spec.generation.max_prompt_tokens
        while True:
            message = input_generation_prompt(self.spec.task.instruction, gold, shown, label)
            prompt = self.backend.render_chat([{"role": "user", "content": message}], INPUT_RESPONSE_PREFIX)
            if self.backend.count_tokens(prompt) <= budget:
                self.prompts.built += 1
                self.prompts.trimmed += len(shown) < k
                return prompt
            if not shown:
                self.prompts.skipped["prompt_too_long"] += 1
                return None
            shown = shown[: len(shown) // 2]

    def generate_inputs(self) -> list[Candidate]:
        cfg, task = self.spec.generation.inputs, self.spec.task
        temperature = cfg.temperature_for(task.type)
        chain, memory = _input_filters(self.spec)
        longest_input = next((input_char_limit(f.band) for f in chain if isinstance(f, LengthFilter)), None)
        candidates: list[Candidate] = []
        pool: list[str] = []
        first = 0
        if (saved := self._restore_inputs()) is not None:
            first, candidates, pool = saved
            for f in memory:
                for text in pool:
                    f.add(text)
            if cfg.target_inputs is not None and len(pool) >= cfg.target_inputs:
                return candidates
        for round_index in range(first, cfg.rounds_for(task.type)):
            labels: list[str | None] = [None] * cfg.prompts_per_round
            annotated = self.annotator.current_labels(candidates) if self.annotate_each_round else []
            if task.labels:
                counts = Counter(label for _, label in annotated) if self.fill else None
                labels = list(draw_labels(self.rng, task.labels, cfg.prompts_per_round, counts))
            # the gold inputs are shuffled once per round, so a round's prompts share everything up to the pool
            # examples as a prefix, which the engine computes once
            gold = self.rng.sample([e.input for e in task.examples], len(task.examples))
            shown_by = dict(annotated) if self.same_label else None
            fitted = [(self._fit_input_prompt(gold, pool, label, shown_by), label) for label in labels]
            batch = [(prompt, label) for prompt, label in fitted if prompt is not None]
            if not batch:
                break
            params = SamplingParams(
                n=cfg.samples_per_prompt, temperature=temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                max_tokens=cfg.max_new_tokens, stop=INPUT_STOP, seed=self.spec.generation.seed + round_index,
                max_chars=longest_input,
            )
            outputs = self.backend.generate([p for p, _ in batch], params, desc=f"inputs round {round_index + 1}")
            accepted: list[str] = []
            for (_, label), completions in zip(batch, outputs):
                if not completions:  # the backend skipped it: longer than the model's context window
                    self.prompts.skipped[EXCEEDS_CONTEXT] += 1
                for completion in completions:
                    candidate = Candidate(extract_input(completion.text), round_index, label)
                    candidates.append(candidate)
                    failure = first_failure(chain, candidate.input)
                    if failure:
                        candidate.drop("input", *failure)
                        continue
                    accepted.append(candidate.input)
                    for f in memory:
                        f.add(candidate.input)
            pool.extend(accepted)  # the pool is refreshed once per round
            if self.annotate_each_round:
                self.annotator.annotate(candidates)
            rounds = cfg.rounds_for(task.type)
            progress.current().update(GENERATION_SHARE * (round_index + 1) / rounds, rounds_done=round_index + 1,
                                      rounds_total=rounds, inputs_generated=len(candidates))
            log.info("round %d: %d candidates, %d accepted, pool %d", round_index + 1,
                     sum(len(c) for c in outputs), len(accepted), len(pool))
            self._save_inputs(round_index + 1, candidates, pool)
            if cfg.target_inputs is not None and len(pool) >= cfg.target_inputs:
                break
        return candidates

    def _save_inputs(self, rounds: int, candidates: list[Candidate], pool: list[str]) -> None:
        if self.checkpoint is not None:
            _write_inputs_state(self.checkpoint, self.spec, rounds, self.rng, self.prompts, candidates, pool)

    def _restore_inputs(self) -> tuple[int, list[Candidate], list[str]] | None:
        """The rounds done, candidates and pool of an interrupted run of the same config, or None."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return None
        try:
            state = json.loads(self.checkpoint.read_text())
            if state["config"] != config_hash(inputs_settings(self.spec)):
                return None
            version, internal, gauss = state["rng"]
            self.rng.setstate((version, tuple(internal), gauss))
            self.prompts = PromptStats(state["prompts"]["built"], state["prompts"]["trimmed"],
                                       Counter(state["prompts"]["skipped"]))
            candidates = [Candidate(**row) for row in state["candidates"]]
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("ignoring an unreadable input-generation checkpoint %s: %s", self.checkpoint, error)
            return None
        log.info("resuming input generation after round %d (%d candidates)", state["rounds"], len(candidates))
        return state["rounds"], candidates, list(state["pool"])

    # -- class balancing ----------------------------------------------------------------------------------
    def balance(self, candidates: list[Candidate]) -> BalanceStep:
        kept = [c for c in candidates if c.dropped_at == "kept"]
        by_label: dict[str, list[Candidate]] = defaultdict(list)
        for c in kept:
            by_label[c.output or ""].append(c)
        before = {label: len(by_label.get(label, [])) for label in self.spec.task.labels or []}
        if by_label:
            smallest = min(len(group) for group in by_label.values())
            for group in by_label.values():
                for c in self.rng.sample(group, len(group) - smallest):
                    c.drop("balance", "balance", "class_balance")
        after = {label: sum(1 for c in by_label.get(label, []) if c.dropped_at == "kept") for label in before}
        return BalanceStep(entered=len(kept), kept=sum(c.dropped_at == "kept" for c in kept),
                           dropped=_counts(candidates, "balance"), before=before, after=after,
                           missing_labels=[label for label, n in before.items() if n == 0])


def _counts(candidates: list[Candidate], step: str) -> Drops:
    dropped: dict[str, Counter] = defaultdict(Counter)
    for c in candidates:
        if c.dropped_at == step:
            dropped[c.filter or ""][c.reason or ""] += 1
    return {name: dict(reasons) for name, reasons in sorted(dropped.items())}


def funnel_report(gen: Generator, candidates: list[Candidate], balance: BalanceStep | None) -> FilterReport:
    """The filter funnel; at each step `in == kept + sum(dropped)`."""
    def total(step: str) -> int:
        return sum(1 for c in candidates if c.dropped_at == step)

    after_inputs = len(candidates) - total("input")
    after_annotation = after_inputs - total("annotation")
    missing = None
    if gen.spec.task.type is TaskType.CLASSIFICATION:
        kept = Counter(c.output for c in candidates if c.dropped_at == "kept")
        missing = [label for label in gen.spec.task.labels or [] if not kept[label]]
    return FilterReport(
        prompts=Prompts(built=gen.prompts.built, trimmed=gen.prompts.trimmed, skipped=dict(gen.prompts.skipped)),
        inputs=Step(entered=len(candidates), kept=after_inputs, dropped=_counts(candidates, "input")),
        annotation=gen.annotator.step(candidates, after_inputs, after_annotation, _counts(candidates, "annotation")),
        final=total("kept"), missing_labels=missing, balance=balance)


GENERATION_SHARE = 0.5
"""The part of the stage's progress that input generation accounts for (annotation takes the rest)."""


@dataclass(frozen=True)
class GeneratedData:
    examples: int
    report: FilterReport


def run_generate(spec: SelfGuideJobSpec, backend: GenerationBackend, out_dir: Path,
                 checkpoint: Path | None = None) -> GeneratedData:
    """Synthesize, filter and write the training set into `out_dir` (input generation resumable from
    `checkpoint`)."""
    gen = Generator(spec, backend, checkpoint)
    candidates = gen.generate_inputs()
    to_annotate = sum(c.dropped_at == "kept" for c in candidates)
    tracker = progress.current()
    tracker.update(GENERATION_SHARE, inputs_generated=len(candidates), inputs_annotated=0, inputs_total=to_annotate)
    gen.annotator.annotate(candidates, lambda done: tracker.update(
        GENERATION_SHARE + (0.99 - GENERATION_SHARE) * done / max(1, to_annotate), inputs_annotated=done))
    gen.annotator.finish(candidates)
    tracker.update(0.99, inputs_annotated=to_annotate)
    balance = None
    if spec.task.type is TaskType.CLASSIFICATION and spec.generation.filtering.balance_classes:
        balance = gen.balance(candidates)
    report = funnel_report(gen, candidates, balance)
    kept = [c for c in candidates if c.dropped_at == "kept"]
    atomic_write_jsonl(out_dir / TRAIN_FILE, ({"input": c.input, "output": c.output} for c in kept))
    atomic_write_jsonl(out_dir / CANDIDATES_FILE, (c.row() for c in candidates))
    report.write(out_dir / FILTER_REPORT_FILE)
    return GeneratedData(len(kept), report)


def votes_per_input(spec: SelfGuideJobSpec) -> int:
    """Sequences annotation decodes per input: its sampled answers (label likelihood decodes none)."""
    annotation = spec.generation.annotation
    return annotation.samples if annotation.method is AnnotationMethod.VOTE else 0


def sequences(spec: SelfGuideJobSpec) -> int:
    """About how many sequences the stage decodes: every input it asks for, and the votes on each."""
    inputs = spec.generation.inputs
    asked = inputs.rounds_for(spec.task.type) * inputs.prompts_per_round * inputs.samples_per_prompt
    return asked * (1 + votes_per_input(spec))


def run(ctx: StageContext) -> GenerateResult:
    """The stage entry point: one model load serves input generation and annotation."""
    spec = ctx.spec
    with opened(spec, spec.generation.batch_size, sequences(spec)) as backend:
        result = run_generate(spec, backend, ctx.output, ctx.checkpoints / INPUTS_CHECKPOINT)
    report = result.report
    dropped: Counter[str] = Counter()
    for _, step in report.steps():
        dropped.update(step.reasons())
    return GenerateResult(
        examples=result.examples, candidates=report.inputs.entered, dropped=dict(dropped),
        missing_labels=report.missing_labels or [],
        generated_tokens=backend.throughput.generated_tokens, funnel=report.funnel(),
        tokens_per_second=round(backend.throughput.tokens_per_second, 1),
    )
