"""The pipeline driver: run (or resume) the stages a job needs in a work directory, then apply the quality gate and
publish.

The one loop over a job's stages: `selfguide run`, `selfguide bench` and `selfguide sweep` run jobs through
`run_pipeline`, `selfguide stage` (what a stage pod runs) runs one stage through `run_one`. Both publish through
`selfguide.stages.publish` by the rule the operator applies too (`selfguide.contract.publication`); `bench` and
`sweep` publish nothing. Each stage itself runs through `selfguide.runner.run_stage` (hash, lock, atomic commit,
record).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from selfguide.contract.errors import InvalidInput, QualityGateFailed
from selfguide.contract.layout import REPORT_HTML
from selfguide.contract.progress import Sink
from selfguide.contract.publication import missed_gate
from selfguide.contract.registry import stages_for
from selfguide.contract.results import EvaluateResult, GateResult
from selfguide.runner import StageOutcome, checkpoint_dir, run_stage
from selfguide.spec import SelfGuideJob, SelfGuideJobSpec
from selfguide.stages.generate.declaration import GENERATE
from selfguide.stages.generate.reuse import reuse_inputs
from selfguide.stages.publish import publish

log = logging.getLogger(__name__)

ProgressFor = Callable[[str], contextlib.AbstractContextManager[Sink]]
"""Per stage (by name), where its live progress goes while it runs (the CLI's progress bar)."""


@dataclass(frozen=True)
class JobRef:
    """The job a model is published for: its serving files name the adapter after it."""

    name: str
    namespace: str = "default"

    @classmethod
    def of(cls, job: SelfGuideJob) -> JobRef:
        return cls(job.metadata.name, job.metadata.namespace or "default")


@dataclass(frozen=True)
class PipelineRun:
    """What `run_pipeline` did in `workdir`: each stage's outcome in order, the serving directory when the model was
    published, and the quality gate the model missed (None when it passed or there is none)."""

    workdir: Path
    outcomes: tuple[StageOutcome, ...]
    serving: Path | None
    missed_gate: GateResult | None

    @property
    def seconds(self) -> float:
        """What the stages took when they ran (a stage complete from an earlier run counts with its record's)."""
        return sum(o.record.seconds for o in self.outcomes)

    def check_gate(self) -> None:
        """QualityGateFailed (exit code 4) when the model missed `spec.evaluation.gate`: nothing is published, the
        data, the model and the report stay in the work directory."""
        if self.missed_gate is not None:
            raise QualityGateFailed(f"{self.missed_gate.message()}; the model is not published "
                                    f"(report: {self.workdir / REPORT_HTML})")


def start_from_inputs(spec: SelfGuideJobSpec, workdir: Path, source: Path) -> None:
    """`--inputs-from`: start the run in `workdir` from the inputs the run in work directory `source` generated with
    the same input-generation settings (`selfguide.stages.generate.reuse`). Nothing to do once the run's own
    generate stage has completed or started."""
    checkpoints = checkpoint_dir(spec, workdir, GENERATE.name)
    if checkpoints is None:
        return
    try:
        kept = reuse_inputs(spec, source, checkpoints)
    except InvalidInput as error:
        raise InvalidInput(f"--inputs-from: {error}") from None
    if kept is not None:
        log.info("%s: input generation reused from %s (%d inputs)", workdir.name, source, kept)


def _publish(spec: SelfGuideJobSpec, workdir: Path, outcome: StageOutcome, publish_as: JobRef | None) -> Path | None:
    if publish_as is None:
        return None
    return publish(spec, workdir, outcome.stage, outcome.result, publish_as.name, publish_as.namespace)


def run_one(spec: SelfGuideJobSpec, workdir: Path, name: str, *, force: bool = False, progress: Sequence[Sink] = (),
            publish_as: JobRef | None = None) -> StageOutcome:
    """Run (or find complete) one stage; after the job's last stage, publish for `publish_as` when the model may be
    published (and withdraw stale serving files when it may not)."""
    outcome = run_stage(spec, workdir, name, force=force, progress=progress)
    _publish(spec, workdir, outcome, publish_as)
    return outcome


def run_pipeline(spec: SelfGuideJobSpec, workdir: Path, *, force: bool = False, progress: ProgressFor | None = None,
                 publish_as: JobRef | None = None, inputs_from: Path | None = None) -> PipelineRun:
    """Run (or resume: complete stages are skipped) every stage `spec` needs in `workdir`, in order; then publish
    for `publish_as` (None: publish nothing) when the gate allows. With `inputs_from`, generation starts from the
    inputs of another run (`start_from_inputs`). The gate's verdict is returned, not raised (`check_gate`)."""
    if inputs_from is not None:
        start_from_inputs(spec, workdir, inputs_from)
    outcomes = []
    for definition in stages_for(spec):
        with progress(definition.name) if progress else contextlib.nullcontext() as sink:
            outcomes.append(run_stage(spec, workdir, definition.name, force=force,
                                      progress=[sink] if sink is not None else []))
    serving = _publish(spec, workdir, outcomes[-1], publish_as)
    evaluation = next((o.result for o in outcomes if isinstance(o.result, EvaluateResult)), None)
    return PipelineRun(workdir, tuple(outcomes), serving, missed_gate(spec, evaluation))
