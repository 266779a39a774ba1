"""A test double of the ML work of `selfguide stage`, for operator tests that need many jobs or exact failures.

The operator runs it through its `SELFGUIDE_STAGE_COMMAND` setting, with the same arguments, environment and
termination-message protocol as the real command. It writes each stage's main artifact and reports a summary.
Environment (set through the SelfGuideJob's `spec.pod.env`):
  FAKE_STAGE_SECONDS  how long each stage takes (default 0);
  FAKE_STAGE_FAIL     `<stage>:permanent` (exit 3) or `<stage>:retryable` (exit 1) to fail that stage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml

SUMMARIES = {
    "generate": {"examples": 8, "candidates": 12, "dropped": {"duplicate": 3, "length": 1}},
    "train": {"examples": 8, "steps": 2, "epochs": 1, "finalLoss": 1.25},
    "evaluate": {"metric": "exactMatch", "examples": 2, "baseline": 50.0, "finetuned": 100.0, "delta": 50.0,
                 "scores": {"fewShotPrompting": 50.0, "selfGuide": 100.0}},
}
ARTIFACTS = {"generate": "train.jsonl", "train": "adapter/adapter_config.json", "evaluate": "report.json"}


def report(outcome: dict) -> None:
    Path(os.environ["SELFGUIDE_TERMINATION_LOG"]).write_text(json.dumps(outcome))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["stage"])
    parser.add_argument("stage")
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()
    job = yaml.safe_load(args.spec.read_text())
    time.sleep(float(os.environ.get("FAKE_STAGE_SECONDS", "0")))
    failing, _, kind = os.environ.get("FAKE_STAGE_FAIL", "").partition(":")
    if failing == args.stage:
        report({"stage": args.stage, "ok": False, "permanent": kind == "permanent",
                "error": f"fake {kind} failure of {job['metadata']['name']}"})
        return 3 if kind == "permanent" else 1
    artifact = args.workdir / args.stage / ARTIFACTS[args.stage]
    artifact.parent.mkdir(parents=True, exist_ok=True)
    artifact.write_text(json.dumps({"job": job["metadata"]["name"]}) + "\n")
    report({"stage": args.stage, "ok": True, "skipped": False, "summary": SUMMARIES[args.stage]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
