"""Fail fast on models: what the Hugging Face Hub answers decides whether a missing model is permanent."""

from __future__ import annotations

import httpx2 as httpx
import huggingface_hub
import pytest
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from selfguide.engine.models import ModelNotFound, check_model
from selfguide.spec.model import ModelSpec


def hub_says(monkeypatch, error: Exception | None) -> None:
    def auth_check(name, repo_type="model", token=None):
        if error is not None:
            raise error

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "auth_check", auth_check)


def response(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("GET", "https://huggingface.co/api/models/org/m"))


@pytest.mark.parametrize(("error", "message"), [
    (GatedRepoError("gated", response=response(403)), "gated"),
    (RepositoryNotFoundError("missing", response=response(404)), "not on the Hugging Face Hub"),
])
def test_a_missing_or_gated_hub_model_is_a_permanent_error(monkeypatch, error, message):
    hub_says(monkeypatch, error)
    with pytest.raises(ModelNotFound, match=message):
        check_model(ModelSpec(name="org/model"))


def test_a_network_error_is_no_verdict(monkeypatch):
    hub_says(monkeypatch, httpx.ConnectError("no route to host"))
    assert check_model(ModelSpec(name="org/model")) is None  # no verdict: loading the model will retry


def test_a_missing_local_model_is_a_permanent_error():
    with pytest.raises(ModelNotFound, match="does not exist"):
        check_model(ModelSpec(name="/nonexistent/model"))
