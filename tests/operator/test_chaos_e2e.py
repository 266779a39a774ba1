"""Chaos: the operator killed (SIGKILL) at random points across every stage handoff of several jobs. Every job
still completes with exactly one Job per stage (none created twice) and exactly one Event per stage transition
(none lost, none doubled)."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter

import pytest

from tests.harness.fixtures import Kubectl
from tests.operator.helpers import SelfGuideJobs, manifest, stage_env
from tests.operator.test_operator_e2e import children

pytestmark = pytest.mark.e2e

JOBS = 3
KILLS = int(os.environ.get("CHAOS_KILLS", "12"))


def test_killing_the_operator_at_random_points_loses_no_event_and_duplicates_no_job(
        start_operator, sgjs: SelfGuideJobs, output_claim, kubectl: Kubectl, namespace: str):
    seed = int(os.environ.get("CHAOS_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    print(f"chaos seed {seed}")
    names = [f"chaos-{i}" for i in range(JOBS)]
    operator = start_operator(namespace)
    for name in names:
        sgjs.create(manifest(name, pod={"env": stage_env(FAKE_STAGE_SECONDS="2")}))
    uids: dict[str, set[str]] = {name: set() for name in names}

    def observe() -> bool:
        for name in names:
            uids[name] |= {j["metadata"]["uid"] for j in children(kubectl, namespace, name, "jobs")}
        return all(sgjs.status(name).get("phase") in ("Succeeded", "Failed") for name in names)

    kills = 0
    deadline = time.monotonic() + 300
    while not observe():
        assert time.monotonic() < deadline, f"jobs unfinished after 300 s (seed {seed})"
        if kills < KILLS:
            time.sleep(rng.uniform(0.0, 1.0))
            operator.stop(signal.SIGKILL)
            kills += 1
            operator = start_operator(namespace)
        else:
            time.sleep(0.5)

    for name in names:
        status = sgjs.status(name)
        assert status["phase"] == "Succeeded", (seed, name, status)
        assert [s["attempts"] for s in status["stages"]] == [1, 1, 1], (seed, name, status["stages"])
        assert len(uids[name]) == 3, (seed, name, uids[name])  # no stage Job created twice
        out = kubectl("get", "events", "-n", namespace, "--field-selector",
                      f"involvedObject.kind=SelfGuideJob,involvedObject.name={name}", "-o", "json").stdout
        events = json.loads(out)["items"]
        per_transition = Counter((e["reason"], e["message"].split(" ")[1] if e["reason"].startswith("Stage") else "")
                                 for e in events for _ in range(e.get("count") or 1))
        for stage in ("generate", "train", "evaluate"):
            assert per_transition[("StageStarted", stage)] == 1, (seed, name, per_transition)
            assert per_transition[("StageSucceeded", stage)] == 1, (seed, name, per_transition)
        assert per_transition[("Completed", "")] == 1, (seed, name, per_transition)
    print(f"chaos: {kills} kills, {JOBS} jobs, 0 duplicate Jobs, 0 lost or doubled Events")
