"""Work lost when a `generate` stage is killed at a random point, with and without per-round checkpoints.

    .venv/bin/python -m benchmarks.work_lost --rounds 20 --round-seconds 0.05 --trials 40

The real input-generation loop (`Generator.generate_inputs` through `run_generate`) runs against a scripted
backend whose every round takes `--round-seconds` (standing in for the model: what is measured is the
bookkeeping, not generation speed). Each trial kills the stage at a uniformly random moment of its input
generation, then runs it again to completion from the same checkpoint file: the work lost is the generation
done twice (before the kill, on rounds that the next attempt generates again), in rounds. Without a checkpoint
the next attempt starts from round 1, so everything before the kill is lost. One JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from selfguide.spec import SelfGuideJobSpec
from selfguide.stages.generate.stage import run_generate
from tests import manifests
from tests.stages.generate.test_generator import ScriptedModel


class Killed(BaseException):
    """The process dies here."""


def spec(rounds: int) -> SelfGuideJobSpec:
    return SelfGuideJobSpec.model_validate({
        "task": manifests.GENERATION["spec"]["task"],
        "generation": {"inputs": {"maxRounds": rounds, "promptsPerRound": 2, "samplesPerPrompt": 1},
                       "annotation": {"samples": 1, "keep": 1}},
    })


class Backend(ScriptedModel):
    """A scripted backend whose rounds take `round_seconds` of generation; it dies `kill_at` seconds of
    generation in (counted in generation time only, so the kill lands at a uniform point of the work)."""

    def __init__(self, round_seconds: float, offset: int, kill_at: float | None) -> None:
        super().__init__(lambda r, k, label: f"input {r + offset} {k} " + "word " * ((r + offset) % 3),
                         lambda text: [text] * 4)
        self.round_seconds, self.kill_at = round_seconds, kill_at
        self.generated = 0.0
        """Seconds of generation done so far."""

    def generate(self, prompts, params, desc: str = ""):
        if desc.startswith("inputs"):
            if self.kill_at is not None and self.generated + self.round_seconds > self.kill_at:
                time.sleep(self.kill_at - self.generated)
                self.generated = self.kill_at
                raise Killed
            time.sleep(self.round_seconds)
            self.generated += self.round_seconds
        return super().generate(prompts, params, desc)


def trial(rounds: int, round_seconds: float, checkpointing: bool, rng: random.Random, root: Path) -> float:
    """Rounds of input generation lost to one kill at a random moment (generated before the kill, and again
    by the next attempt; a round cut short counts with the part that was done)."""
    kill_at = rng.uniform(0, rounds * round_seconds)
    checkpoint = root / "inputs.json" if checkpointing else None
    killed = Backend(round_seconds, 0, kill_at)
    try:
        run_generate(spec(rounds), killed, root / "a", checkpoint)
    except Killed:
        pass
    done = json.loads(checkpoint.read_text())["rounds"] if checkpoint and checkpoint.is_file() else 0
    resumed = Backend(round_seconds, done, None)
    run_generate(spec(rounds), resumed, root / "b", checkpoint)
    assert len(resumed.input_rounds) == rounds - done
    return killed.generated / round_seconds - done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--round-seconds", type=float, default=0.05)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for checkpointing in (False, True):
        rng = random.Random(args.seed)
        lost = []
        for _ in range(args.trials):
            with tempfile.TemporaryDirectory() as tmp:
                lost.append(trial(args.rounds, args.round_seconds, checkpointing, rng, Path(tmp)))
        print(json.dumps({
            "checkpoints": checkpointing, "rounds": args.rounds, "trials": args.trials,
            "lostRoundsMean": round(statistics.mean(lost), 3), "lostRoundsMax": round(max(lost), 3),
            "lostFractionOfInputGenerationMean": round(statistics.mean(lost) / args.rounds, 4),
        }))


if __name__ == "__main__":
    main()
