"""The `selfguide` command line: validate manifests, run jobs locally, run one stage (what pods run).

Exit codes follow from the error that ended the command (`selfguide.contract.errors.ExitCode`): 0 success;
2 invalid input (manifest or arguments); 3 a permanent failure that a retry cannot fix (model not found,
unusable data, no GPU); 4 (`run` only) the fine-tuned model missed `spec.evaluation.gate`; 1 anything else
(worth a retry).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from selfguide.contract import termination
from selfguide.contract.errors import ExitCode, SelfGuideError, exit_code_for, is_permanent
from selfguide.contract.intervals import gate_sample_note
from selfguide.contract.progress import Sink, StageProgress, reporter_from_environment
from selfguide.contract.registry import stage_names, stages_for
from selfguide.contract.termination import TerminationMessage
from selfguide.manifest import ManifestError, load_manifest, load_manifests
from selfguide.spec import SelfGuideJob

EXIT_INVALID = ExitCode.INVALID_INPUT

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="SELF-GUIDE: a model writes, filters and fine-tunes on its own task data.")

log = logging.getLogger("selfguide")


def setup_logging(verbose: bool, json_logs: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if json_logs:
        fmt = '{"time": "%(asctime)s", "level": "%(levelname)s", "logger": "%(name)s", "message": %(message_json)s}'
        handler = logging.StreamHandler()
        handler.setFormatter(_JsonFormatter(fmt))
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("httpx", "httpx2", "openai", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.message_json = json.dumps(record.getMessage())
        return super().format(record)


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def print_problems(error: ManifestError, prefix: str = "") -> None:
    for problem in error.problems:
        typer.echo(f"{prefix}{problem}", err=True)


@app.callback()
def main_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    json_logs: Annotated[bool, typer.Option("--json-logs", help="One JSON object per log line.")] = False,
) -> None:
    setup_logging(verbose, json_logs)


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Manifest files ('-' for standard input).")]) -> None:
    """Check SelfGuideJob manifests with the same rules as the cluster's CRD; one line per problem."""
    bad = False
    for file in files:
        try:
            jobs = load_manifests(file)
        except ManifestError as error:
            print_problems(error, f"{file}: " if len(files) > 1 else "")
            bad = True
            continue
        for job in jobs:
            typer.echo(f"{file}: SelfGuideJob {job.metadata.name} is valid")
            if note := gate_sample_note(job.spec):
                typer.echo(f"{file}: warning: spec.evaluation.gate: {note}")
    if bad:
        raise typer.Exit(EXIT_INVALID)


def _load_or_exit(file: Path) -> SelfGuideJob:
    try:
        return load_manifest(file)
    except ManifestError as error:
        print_problems(error)
        raise typer.Exit(EXIT_INVALID) from None


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="A SelfGuideJob manifest.")],
    workdir: Annotated[Path, typer.Option(help="Where artifacts go (created if missing).")] = Path("runs/job"),
    force: Annotated[bool, typer.Option(help="Rerun stages even when complete for this config.")] = False,
) -> None:
    """Run every stage of a job on this machine (same stages and artifacts as on a cluster).

    Exits with code 4 when the fine-tuned model misses `spec.evaluation.gate` (nothing is published; the data,
    the adapter and the report stay in the work directory)."""
    from selfguide.pipeline import JobRef, run_pipeline

    job = _load_or_exit(file)
    with failures_to_exit_codes():
        pipeline = run_pipeline(job.spec, workdir, force=force, progress=_starting, publish_as=JobRef.of(job))
    typer.echo(f"\nSelfGuideJob {job.metadata.name}: done ({workdir})")
    for outcome in pipeline.outcomes:
        timing = "already complete" if outcome.skipped else f"{outcome.seconds:.0f}s"
        result = outcome.result
        gpu = f" [{result.gpu_seconds or 0:.0f} GPU-s]" if result.gpus and not outcome.skipped else ""
        typer.echo(f"  {outcome.stage:<9} {timing:>16}  {result.line()}{gpu}")
    artifacts = [workdir / a for d in stages_for(job.spec) for a in d.artifacts(job.spec)]
    typer.echo("  artifacts: " + ", ".join(f"{a}/" if a.is_dir() else str(a) for a in artifacts))
    if pipeline.serving is not None:
        typer.echo(f"  serving: {pipeline.serving}/ (vllm-serve.sh, modeladapter.yaml; see docs/serving.md)")
    with failures_to_exit_codes():
        pipeline.check_gate()


def _starting(stage: str) -> contextlib.AbstractContextManager[Sink]:
    log.info("stage %s: starting", stage)
    return progress_bar(stage)


@app.command()
def stage(
    name: Annotated[str, typer.Argument(help=f"The stage: {', '.join(stage_names())}.")],
    spec: Annotated[Path, typer.Option(help="The SelfGuideJob manifest (mounted from a ConfigMap in pods).")],
    workdir: Annotated[Path, typer.Option(help="The job's artifact directory.")],
    force: Annotated[bool, typer.Option(help="Rerun even when complete for this config.")] = False,
) -> None:
    """Run one stage; this is what stage pods execute."""
    from selfguide.pipeline import JobRef, run_one

    if name not in stage_names():
        raise fail(f"unknown stage {name!r}; expected one of {', '.join(stage_names())}", EXIT_INVALID)
    job = _load_or_exit(spec)
    reporter = reporter_from_environment(job.metadata.namespace or "default", job.metadata.name, name)
    with failures_to_exit_codes(stage=name), contextlib.closing(reporter or _Nothing()):
        outcome = run_one(job.spec, workdir, name, force=force, progress=[reporter] if reporter else [],
                          publish_as=JobRef.of(job))
    summary = outcome.result.model_dump(mode="json", by_alias=True)
    termination.write(TerminationMessage(stage=name, ok=True, skipped=outcome.skipped, summary=summary))
    typer.echo(json.dumps({"stage": name, "skipped": outcome.skipped, "summary": summary}))


class _Nothing:
    def close(self) -> None:
        pass


@contextlib.contextmanager
def progress_bar(stage: str) -> Iterator[Sink]:
    """A progress bar on stderr fed by the stage's live progress (the numbers the operator puts in status)."""
    from tqdm.auto import tqdm

    with tqdm(total=100, desc=stage, unit="%", file=sys.stderr, leave=True,
              bar_format="{desc:<9} {percentage:3.0f}%|{bar:24}| {postfix}") as bar:
        def show(snapshot: StageProgress) -> None:
            bar.n = snapshot.percent
            bar.set_postfix_str(snapshot.line(), refresh=True)

        yield show


@app.command()
def crd(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
) -> None:
    """Print the SelfGuideJob CustomResourceDefinition, generated from the spec models."""
    from selfguide.crd import render

    if output is None:
        typer.echo(render(), nl=False)
    else:
        output.write_text(render(), encoding="utf-8")


@contextlib.contextmanager
def failures_to_exit_codes(stage: str | None = None) -> Iterator[None]:
    """Turn failures into a one-line error and the exit code their class implies, never a traceback."""
    try:
        yield
    except (typer.Exit, KeyboardInterrupt):
        raise
    except ManifestError as error:
        print_problems(error, f"{error.source}: ")
        raise typer.Exit(EXIT_INVALID) from None
    except Exception as error:
        if not isinstance(error, SelfGuideError):
            log.exception("failed")
        message = str(error) or type(error).__name__
        termination.write(TerminationMessage(stage=stage, ok=False, permanent=is_permanent(error), error=message))
        raise fail(message, exit_code_for(error)) from None


def _overrides(configs: list[Path] | None) -> dict[str, Any]:
    """Spec fields (YAML, same layout as `spec:` of a manifest) applied to every task; later files win."""
    from selfguide.experiments.bench import deep_merge

    merged: dict[str, Any] = {}
    for config in configs or []:
        merged = deep_merge(merged, _read_config(config))
    return merged


def _read_config(config: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise fail(f"{config}: {error}", EXIT_INVALID) from None
    if not isinstance(data, dict):
        raise fail(f"{config}: expected a mapping of spec fields", EXIT_INVALID)
    return data


TaskFiles = Annotated[list[Path], typer.Argument(help="Task files in the schema of ../shared/benchmarks/sni.")]
ConfigOption = Annotated[list[Path] | None, typer.Option(
    help="YAML of spec fields applied to every task (budgets, recipes); repeat to layer several.")]
MaxEvalOption = Annotated[int | None, typer.Option(help="Score at most this many examples per task.")]
SeedsOption = Annotated[int, typer.Option(
    min=1, max=100, help="Runs per task, with the generation and training seeds moved together (0, 1, ...); "
                         "deltas get a paired interval over items and seeds.")]


@app.command()
def bench(
    tasks: TaskFiles,
    workdir: Annotated[Path, typer.Option(help="One sub-directory per task; reruns resume.")] = Path("runs/bench"),
    config: ConfigOption = None,
    max_eval: MaxEvalOption = None,
    annotator_items: Annotated[int, typer.Option(
        min=0, help="Classification: validation inputs to measure the annotator's accuracy on (0: skip).")] = 60,
    inputs_from: Annotated[Path | None, typer.Option(
        help="Another bench's workdir whose runs generated the inputs with the same settings (a configuration "
             "that differs in annotation, filtering or training): start from them instead of generating.")] = None,
    seeds: SeedsOption = 1,
) -> None:
    """Few-shot prompting versus SELF-GUIDE on each task's test split (the paper's table), with a paired
    95% interval, a verdict (better, worse, no difference) and, for exact match, McNemar's p per task."""
    from selfguide.experiments.bench import run_bench, table

    with failures_to_exit_codes():
        scores = run_bench(tasks, workdir, _overrides(config), max_eval, annotator_items, inputs_from, seeds)
    typer.echo(table(scores))


@app.command()
def sweep(
    tasks: TaskFiles,
    workdir: Annotated[Path, typer.Option(help="Where every configuration's runs go.")] = Path("runs/sweep"),
    temperature: Annotated[list[float] | None, typer.Option(help="Input-generation temperatures [0.6 0.8 1.0].")] = None,
    length_filters: Annotated[list[bool] | None, typer.Option(help="Length filters on and/or off [on].")] = None,
    epochs: Annotated[list[int] | None, typer.Option(help="Training epochs [1 2 3].")] = None,
    recipe: Annotated[list[Path] | None, typer.Option(
        help="Named configurations to compare (YAML like --config, named by file stem) [the paper's].")] = None,
    config: ConfigOption = None,
    max_eval: MaxEvalOption = None,
    seeds: SeedsOption = 1,
) -> None:
    """One Parameter Fits All: the grid configuration with the best worst-task improvement (validation), and
    whether the evidence (paired intervals over items and seeds) sets it apart from each other configuration."""
    from selfguide.experiments.sweep import PAPER, Recipe, evidence_line, grid, run_sweep, sweep_table

    recipes = [Recipe(path.stem, _read_config(path)) for path in recipe or []] or [PAPER]
    with failures_to_exit_codes():
        configs = grid(temperature or [0.6, 0.8, 1.0], length_filters or [True], epochs or [1, 2, 3], recipes)
        best, results = run_sweep(tasks, workdir, configs, _overrides(config), max_eval, seeds)
    typer.echo(sweep_table(results, best))
    typer.echo("\n" + evidence_line(best, results))


def main() -> None:
    app(prog_name="selfguide")


if __name__ == "__main__":
    main()
