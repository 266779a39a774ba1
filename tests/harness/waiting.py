"""Polling helpers shared by the tests that talk to the control plane."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TypeVar

from tests.harness.fixtures import Kubectl

T = TypeVar("T")


def wait_for(check: Callable[[], T], what: str, timeout: float = 60, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)
    return result


def crd_established(kubectl: Kubectl, name: str) -> bool:
    """Whether the CRD is Established. (`kubectl wait` and jsonpath filters fail on a CRD so new that it has
    no conditions yet, so the conditions are read from JSON.)"""
    result = kubectl("get", f"crd/{name}", "-o", "json", check=False)
    if result.returncode != 0:
        return False
    conditions = json.loads(result.stdout).get("status", {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)
