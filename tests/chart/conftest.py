"""The real `helm` (built by hack/build-tools.sh into KUBEBUILDER_ASSETS) rendering charts/selfguide."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.fixtures import Kubectl, _assets
from tests.harness.waiting import crd_established, wait_for
from tests.operator.helpers import ROOT

CHART = ROOT / "charts" / "selfguide"
VALUES = Path(__file__).with_name("values")
SELFGUIDEJOBS = "selfguidejobs.selfguide.dev"
"""The resource (for kubectl), and the name of its CRD."""


@dataclass
class Helm:
    binary: Path
    home: Path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``helm ARGS`` with its caches and config under `home`; with `check`, failing raises."""
        homes = {f"HELM_{kind}_HOME": str(self.home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
        result = subprocess.run([str(self.binary), *args], capture_output=True, text=True, check=False,
                                env=os.environ | homes, timeout=60)
        if check and result.returncode:
            raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def template(self, *values: Path, release: str = "selfguide", namespace: str = "selfguide-system") -> str:
        """The chart rendered with these values files (without its CRDs)."""
        return self("template", release, str(CHART), "--namespace", namespace,
                    *(arg for file in values for arg in ("--values", str(file)))).stdout


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(_assets(("helm",)) / "helm", tmp_path_factory.mktemp("helm"))


@pytest.fixture
def chart_crds(kubectl: Kubectl) -> None:
    """The chart's CRDs applied as docs/install.md says to on an upgrade, and Established."""
    kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    wait_for(lambda: crd_established(kubectl, SELFGUIDEJOBS), "the SelfGuideJob CRD to be established", timeout=30)


def objects(rendered: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [doc for doc in docs if doc["kind"] == kind]
    return found


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def operator_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The environment the Deployment gives the operator."""
    return {var["name"]: var["value"] for var in operator_container(docs)["env"]}
