"""Where model weights are found (no model is loaded here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfguide.contract.environment import pvc_local_path
from selfguide.contract.errors import InvalidInput, PermanentError
from selfguide.engine.models import ModelNotFound, bundled_model_dir, locate
from selfguide.spec import ModelSpec


def test_a_prebuilt_bundled_model_is_used_without_converting(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "smollm2-135m-instruct").mkdir()
    (tmp_path / "smollm2-135m-instruct" / "config.json").write_text("{}")
    monkeypatch.setenv("SELFGUIDE_PREBUILT_MODELS", str(tmp_path))
    monkeypatch.setenv("SELFGUIDE_CACHE", str(tmp_path / "empty-cache"))
    assert bundled_model_dir("smollm2-135m-instruct") == tmp_path / "smollm2-135m-instruct"
    assert not (tmp_path / "empty-cache").exists()


def test_an_unknown_bundled_model_is_a_permanent_error() -> None:
    with pytest.raises(ModelNotFound, match="unknown bundled model"):
        bundled_model_dir("gpt-17")


def test_pvc_paths_map_under_the_claims_root(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SELFGUIDE_PVC_ROOT", str(tmp_path))
    assert pvc_local_path("pvc://models/llama/7b") == tmp_path / "models" / "llama" / "7b"
    assert pvc_local_path("pvc://models//./llama/") == tmp_path / "models" / "llama"
    with pytest.raises(ModelNotFound, match="has no config.json|does not exist"):
        locate(ModelSpec(name="pvc://models/llama/7b"))
    with pytest.raises(InvalidInput, match="would leave the claim"):
        pvc_local_path("pvc://models/../../etc")
    monkeypatch.delenv("SELFGUIDE_PVC_ROOT")
    with pytest.raises(PermanentError, match="SELFGUIDE_PVC_ROOT"):
        pvc_local_path("pvc://models/llama")


def test_hub_ids_pass_through_with_their_revision() -> None:
    location = locate(ModelSpec(name="HuggingFaceTB/SmolLM2-135M-Instruct", revision="main"))
    assert (location.path, location.revision, location.local) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "main", False)
