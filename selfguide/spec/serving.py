"""The optional `serving` section: hand the published adapter to AIBrix by creating its `ModelAdapter`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from selfguide.spec.base import SpecModel

LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"


class ServingSpec(SpecModel):
    """When set, the operator creates an AIBrix `ModelAdapter` (owned by the job) once the adapter is
    published, i.e. every stage succeeded and the quality gate, if any, passed. LoRA only."""

    base_model_name: Annotated[str | None, Field(max_length=63, pattern=LABEL_VALUE)] = None
    """The name the base model is served under (vLLM's `--served-model-name`, AIBrix's `model.aibrix.ai/name`
    label); unset: derived from `spec.model.name`."""
    pod_selector: Annotated[dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]] | None,
                            Field(min_length=1, max_length=16)] = None
    """Labels of the vLLM pods that load the adapter; unset: `model.aibrix.ai/name: <baseModelName>`."""
    artifact_url: Annotated[str | None, Field(min_length=1, max_length=1024, pattern=r"^\S+$")] = None
    """Where the serving pods find the adapter (`s3://`, `gcs://`, `huggingface://` or a path); unset: its
    path on the output claim mounted at /data, as in stage pods."""
