"""Time to ready (and to stop) of the test control plane: API server only, and the full e2e cluster.

    KUBEBUILDER_ASSETS=$(bash hack/build-tools.sh) .venv/bin/python -m benchmarks.controlplane_startup --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.harness.controlplane import ControlPlane
from tests.harness.fake_kubelet import FakeKubelet


def measure(assets: Path, controllers: bool) -> tuple[float, float]:
    """Seconds until the control plane (with controllers and fake nodes if `controllers`) is ready, and
    seconds to stop it."""
    with tempfile.TemporaryDirectory(prefix="selfguide-bench-") as tmp:
        plane = ControlPlane(assets, Path(tmp), controllers=controllers)
        start = time.perf_counter()
        plane.start()
        try:
            if controllers:
                with plane.api_client() as api:
                    kubelet = FakeKubelet(api, Path(tmp) / "kubelet")
                    kubelet.start()
                    ready = time.perf_counter() - start
                    stopping = time.perf_counter()
                    kubelet.stop()
            else:
                ready = time.perf_counter() - start
                stopping = time.perf_counter()
        finally:
            plane.stop()
        return ready, time.perf_counter() - stopping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--assets", type=Path, default=os.environ.get("KUBEBUILDER_ASSETS"),
                        help="directory of the binaries (default: $KUBEBUILDER_ASSETS)")
    args = parser.parse_args()
    if args.assets is None:
        parser.error("set KUBEBUILDER_ASSETS=$(bash hack/build-tools.sh) or pass --assets")
    for label, controllers in (("api-server (etcd + kube-apiserver)", False),
                               ("full (+ controller manager, scheduler, fake kubelet)", True)):
        runs = [measure(args.assets, controllers) for _ in range(args.runs)]
        ready = [r for r, _ in runs]
        stop = [s for _, s in runs]
        print(f"{label}: ready in {statistics.median(ready):.2f}s median, {min(ready):.2f}s min "
              f"({', '.join(f'{r:.2f}' for r in ready)}); stop {statistics.median(stop):.2f}s median")


if __name__ == "__main__":
    main()
