"""Helpers of the operator tests: polling, SelfGuideJobs through the API, small manifests."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client import ApiClient, CustomObjectsApi

from selfguide.spec import GROUP, PLURAL, VERSION
from tests.harness.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
FAKE_STAGE = Path(__file__).with_name("fake_stage.py")
"""A test double of the ML work of `selfguide stage` (see its docstring)."""
OUTPUT_CLAIM = "selfguide-data"


class SelfGuideJobs:
    """SelfGuideJobs of one namespace, through the API."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.api = CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, manifest)

    def get(self, name: str) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec})

    def status(self, name: str) -> dict[str, Any]:
        return self.get(name).get("status") or {}

    def wait_phase(self, name: str, *phases: str, timeout: float = 90) -> dict[str, Any]:
        """The status once its phase is one of `phases`."""
        return wait_for(lambda: (s := self.status(name)).get("phase") in phases and s,
                        f"SelfGuideJob {name} to reach {'/'.join(phases)}", timeout)


def manifest(name: str, **spec: Any) -> dict[str, Any]:
    """A small generation-task SelfGuideJob with a one-example evaluation set; `spec` keys (camelCase) are
    set in its spec (None removes one, e.g. `evaluation=None`)."""
    spec = {"task": {"instruction": "Reverse the words.", "examples": [{"input": "a b", "output": "b a"}]},
            "evaluation": {"examples": [{"input": "c d", "output": "d c"}]}, **spec}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SelfGuideJob", "metadata": {"name": name},
            "spec": {key: value for key, value in spec.items() if value is not None}}


def stage_env(**env: str) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in env.items()]


def load_example(path: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / path).read_text())


def post(url: str, body: dict[str, Any], token: str | None = None) -> int:
    """POST `body` as JSON (with a bearer `token`); the HTTP status, error statuses included."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
