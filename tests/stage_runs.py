"""Real stage runs for the tests: run the real `selfguide` command, write small manifests, share one generate run."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SELFGUIDE = Path(sys.executable).parent / "selfguide"
EXAMPLES = REPO / "examples"

TINY_GENERATION: dict[str, Any] = {
    "batchSize": 8,
    "inputs": {"maxRounds": 1, "promptsPerRound": 4, "temperature": 1.0, "maxNewTokens": 24},
    "annotation": {"samples": 2, "keep": 2, "maxNewTokens": 6},
    "filtering": {"inputLength": {"enabled": False}},
}
"""The smallest budget that still yields a training example for the sentiment example on the bundled model."""


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"})
    env.pop("SELFGUIDE_TERMINATION_LOG", None)  # never let an outer setting leak into a test's message
    env.update(extra)
    return env


def run_cli(*args: str | Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    assert SELFGUIDE.is_file(), f"{SELFGUIDE} is missing: install the package into the virtual environment"
    return subprocess.run([str(SELFGUIDE), *map(str, args)], check=False, capture_output=True, text=True,
                          timeout=timeout, env=cli_env(**env), cwd=REPO)


def start_cli(*args: str | Path, log: Path, **env: str) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen([str(SELFGUIDE), *map(str, args)], stdout=handle, stderr=subprocess.STDOUT,
                            env=cli_env(**env), cwd=REPO)


def wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str, interval: float = 0.02):
    """Poll until `predicate()` returns something truthy; fail when the process ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"the process exited ({proc.returncode}) before {what}")
        time.sleep(interval)
    proc.kill()
    proc.wait()
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def example_manifest(name: str = "sentiment-classification.yaml") -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))


def sentiment_manifest(evaluation: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """The sentiment example with the tiny generation budget; no evaluation unless given."""
    manifest = example_manifest()
    manifest["spec"]["generation"] = copy.deepcopy(TINY_GENERATION)
    manifest["spec"].pop("evaluation")
    if evaluation is not None:
        manifest["spec"]["evaluation"] = evaluation
    manifest["spec"].update(spec)
    return manifest


def write_manifest(path: Path, manifest: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def staging_dirs(workdir: Path, stage: str) -> list[Path]:
    return sorted(workdir.glob(f".{stage}.*"))


@dataclass
class GenerateRun:
    """One generate stage that was SIGKILLed mid-stage, then rerun to completion."""

    spec_file: Path
    workdir: Path
    termination_log: Path
    staging_while_running: list[str]
    generate_existed_after_kill: bool
    staging_after_kill: list[str]
    result: subprocess.CompletedProcess[str]
    seconds: float


@pytest.fixture(scope="session")
def generated_sentiment(tmp_path_factory) -> GenerateRun:
    """`selfguide stage generate` on the real bundled model: killed once mid-stage, then run to completion.

    Shared by the generate stage tests (which assert on every step) and the run/evaluate tests (which reuse
    the generated set instead of generating it again)."""
    root = tmp_path_factory.mktemp("generate")
    spec_file = write_manifest(root / "job.yaml", sentiment_manifest())
    workdir = root / "work"
    termination = root / "termination-log"

    proc = start_cli("stage", "generate", "--spec", spec_file, "--workdir", workdir, log=root / "killed.log")
    seen = wait_for(lambda: staging_dirs(workdir, "generate"), proc, 300, "the .generate.* staging directory")
    time.sleep(1.5)  # well inside the stage: loading the model or generating
    assert proc.poll() is None, "the stage finished before it could be killed"
    kill(proc)
    existed = (workdir / "generate").exists()
    after_kill = [p.name for p in staging_dirs(workdir, "generate")]

    started = time.monotonic()
    result = run_cli("stage", "generate", "--spec", spec_file, "--workdir", workdir,
                     SELFGUIDE_TERMINATION_LOG=str(termination))
    return GenerateRun(spec_file, workdir, termination, [p.name for p in seen], existed, after_kill, result,
                       time.monotonic() - started)
