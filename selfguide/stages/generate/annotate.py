"""Output annotation: the paper's self-consistency vote, or (classification) label likelihood with optional
batch calibration; then the checks that need every annotation (margin, agreement with the pseudo-label)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from selfguide.contract import progress
from selfguide.contract.filter_report import AnnotationStep, Drops
from selfguide.engine.backends.base import EXCEEDS_CONTEXT, GenerationBackend, SamplingParams
from selfguide.prompts import few_shot_messages
from selfguide.spec import SelfGuideJobSpec, TaskType
from selfguide.spec.generation import AnnotationMethod, Calibration
from selfguide.stages.generate.candidates import Candidate
from selfguide.stages.generate.filters import TextFilter, first_failure
from selfguide.stages.generate.labels import calibrate, decide, label_means
from selfguide.stages.generate.vote import majority_vote
from selfguide.text import LabelMatcher


class Annotator:
    """Annotates candidates as they come (all at once, or round by round when label sampling fills classes)."""

    def __init__(self, spec: SelfGuideJobSpec, backend: GenerationBackend, output_filters: Sequence[TextFilter]) -> None:
        self.spec = spec
        self.backend = backend
        self.chain = output_filters
        self.cfg = spec.generation.annotation
        task = spec.task
        self.labels = list(task.labels or []) if task.type is TaskType.CLASSIFICATION else []
        self.to_label = LabelMatcher(self.labels).unique if self.labels else None
        self.likelihood = self.cfg.method is AnnotationMethod.LIKELIHOOD
        self.sample_drops: Counter = Counter()
        """Annotation samples dropped, per (filter, reason)."""

    def annotate(self, candidates: Sequence[Candidate], on_progress: Callable[[int], object] | None = None) -> None:
        """Annotate the candidates that passed the input filters and are not annotated yet, in chunks;
        `on_progress` hears how many were annotated so far after each."""
        pending = [c for c in candidates if c.dropped_at == "kept" and not c.annotated]
        prompts: list[str] = []
        annotated: list[Candidate] = []
        for candidate in pending:
            candidate.annotated = True
            prompt = self.backend.render_chat(few_shot_messages(self.spec.task, candidate.input))
            if self.backend.count_tokens(prompt) > self.spec.generation.max_prompt_tokens:
                candidate.drop("annotation", "prompt", "prompt_too_long")
                continue
            prompts.append(prompt)
            annotated.append(candidate)
        annotate = self._score if self.likelihood else self._vote
        for chunk in progress.chunks(len(prompts)):
            annotate(annotated[chunk], prompts[chunk])
            if on_progress:
                on_progress(chunk.stop)

    def _score(self, candidates: list[Candidate], prompts: list[str]) -> None:
        """Every label's log-probability as the answer; the decision waits for `finish` (calibration needs all)."""
        for candidate, scores in zip(candidates, self.backend.score_answers(prompts, self.labels, desc="scoring labels")):
            if not scores:  # the backend skipped it: longer than the model's context window
                candidate.drop("annotation", "prompt", EXCEEDS_CONTEXT)
                continue
            candidate.scores = {label: round(score, 4) for label, score in zip(self.labels, scores)}

    def _vote(self, candidates: list[Candidate], prompts: list[str]) -> None:
        cfg = self.cfg
        params = SamplingParams(
            n=cfg.keep, best_of=cfg.samples, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
            max_tokens=cfg.max_new_tokens, seed=self.spec.generation.seed,
        )
        for candidate, completions in zip(candidates, self.backend.generate(prompts, params, desc="annotating")):
            if not completions:  # the backend skipped it: longer than the model's context window
                candidate.drop("annotation", "prompt", EXCEEDS_CONTEXT)
                continue
            answers: list[str] = []
            for completion in completions:
                answer = completion.text.strip()
                failure = first_failure(self.chain, answer)
                if failure is None and self.to_label is not None:
                    label = self.to_label(answer)
                    failure, answer = (("label", "not_a_label"), answer) if label is None else (None, label)
                if failure:
                    self.sample_drops[failure] += 1
                else:
                    answers.append(answer)
            vote = majority_vote(answers, cfg.min_agreement)
            candidate.votes, candidate.valid_samples = vote.votes, vote.total
            if not answers:
                candidate.drop("annotation", "vote", "no_valid_answer")
            elif vote.answer is None:
                candidate.drop("annotation", "vote", "no_agreement")
            else:
                candidate.output = vote.answer

    def _means(self, candidates: Sequence[Candidate]) -> dict[str, float]:
        if self.cfg.calibration is Calibration.NONE:
            return {}
        return label_means([c.scores for c in candidates if c.scores is not None])

    def current_labels(self, candidates: Sequence[Candidate]) -> list[tuple[str, str]]:
        """(input, label) of every annotated input so far (likelihood: as decided with the calibration known
        now)."""
        if not self.likelihood:
            return [(c.input, c.output) for c in candidates if c.dropped_at == "kept" and c.output is not None]
        means = self._means(candidates)
        return [(c.input, decide(calibrate(c.scores, means)).label) for c in candidates
                if c.dropped_at == "kept" and c.scores is not None]

    def step(self, candidates: Sequence[Candidate], entered: int, kept: int, dropped: Drops) -> AnnotationStep:
        """The filter report's annotation step: its counts, the samples dropped and how labels were decided."""
        samples_dropped: Drops = defaultdict(dict)
        for (name, reason), n in sorted(self.sample_drops.items()):
            samples_dropped[name][reason] = n
        likelihood = self.likelihood
        return AnnotationStep(
            entered=entered, kept=kept, dropped=dropped, samples_dropped=dict(samples_dropped), method=self.cfg.method,
            calibration=self.cfg.calibration if likelihood else None,
            min_margin=self.cfg.min_margin if likelihood else None,
            label_means={k: round(v, 4) for k, v in self._means(candidates).items()} if likelihood else None)

    def finish(self, candidates: Sequence[Candidate]) -> None:
        """Decide likelihood labels with the calibration of the whole job, then drop low margins and
        disagreements with the pseudo-label."""
        if self.likelihood:
            means = self._means(candidates)
            for candidate in candidates:
                if candidate.dropped_at != "kept" or candidate.scores is None:
                    continue
                decision = decide(calibrate(candidate.scores, means))
                candidate.output, candidate.margin = decision.label, round(decision.margin, 4)
                if decision.margin < self.cfg.min_margin:
                    candidate.drop("annotation", "margin", "low_margin")
        if self.cfg.require_pseudo_label:
            for candidate in candidates:
                if candidate.dropped_at == "kept" and candidate.pseudo_label is not None \
                        and candidate.output != candidate.pseudo_label:
                    candidate.drop("annotation", "agreement", "disagrees_with_pseudo_label")
