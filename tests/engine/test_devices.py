"""CPU threads: as many as the cores this process may run on (a container's cpuset), unless OMP_NUM_THREADS says."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import torch; from selfguide.engine.devices import resolve_device; resolve_device('cpu'); print(torch.get_num_threads())"
CORES = sorted(os.sched_getaffinity(0))


def threads(env: dict[str, str], cores: set[int]) -> int:
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, cores))
    return int(result.stdout.strip())


@pytest.mark.skipif(len(CORES) < 2, reason="needs two cores to tell the affinity from the machine")
def test_threads_follow_the_affinity_and_omp_num_threads():
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    assert threads(env, set(CORES)) == len(CORES)
    assert threads(env, {CORES[0]}) == 1
    assert threads({**env, "OMP_NUM_THREADS": "1"}, set(CORES)) == 1
