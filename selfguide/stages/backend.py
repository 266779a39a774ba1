"""The job's model loaded for a stage: the one place a stage turns its spec into a generation backend."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from selfguide.engine.backends import open_backend
from selfguide.engine.backends.base import GenerationBackend
from selfguide.spec import SelfGuideJobSpec


@contextlib.contextmanager
def opened(spec: SelfGuideJobSpec, batch_size: int | None, sequences: int, adapter: Path | None = None,
           model_dir: Path | None = None) -> Iterator[GenerationBackend]:
    """The job's model in the backend `spec.generation` asks for, closed on leaving: the base model, with
    `adapter` a LoRA adapter on it, or with `model_dir` a fully fine-tuned model (which no endpoint serves: it
    runs here). `sequences` is about how many sequences the caller decodes (it picks vLLM on a CPU)."""
    model = spec.model if model_dir is None else spec.model.model_copy(
        update={"name": str(model_dir.resolve()), "revision": None})
    generation = spec.generation if model_dir is None else spec.generation.served_locally()
    backend = open_backend(model, generation, batch_size, adapter=str(adapter) if adapter else None,
                           sequences=sequences)
    try:
        yield backend
    finally:
        backend.close()
