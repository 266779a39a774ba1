"""`generation.endpoint`: an OpenAI-compatible server that already serves the base model (vLLM, KServe, AIBrix)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from selfguide.spec.base import SpecModel
from selfguide.spec.model import SecretKeyRef

API_KEY_ENV = "OPENAI_API_KEY"
"""The variable that holds the endpoint's API key in a stage process: set by the operator from
`apiKeySecret`, by the user for `selfguide run`."""


class AdapterPlacement(StrEnum):
    LOCAL = "local"
    """The evaluate stage loads the base model and the fine-tuned adapter itself (its pod needs the model and,
    for speed, a GPU); few-shot prompting of the base model still goes to the endpoint."""
    SERVER = "server"
    """The evaluate stage loads the adapter into the server (vLLM's `/v1/load_lora_adapter`, which needs
    `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, `--enable-lora`, and the output claim mounted at /data as in stage
    pods, so a server in the job's own namespace: a claim mounts only there) and unloads it when done. LoRA
    only."""


class ApiKeySecret(SecretKeyRef):
    """A key of a Secret in the job's namespace holding the endpoint's API key (sent as a bearer token)."""

    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = "apiKey"


class EndpointSpec(SpecModel):
    """Where `backend: openai` sends generation, annotation and few-shot evaluation: `/v1/completions` with token-id
    prompts, `n`, `seed` and `logprobs` (vLLM's server has them all; a server without them is refused with a
    clear error). The model's tokenizer is still loaded locally, to render prompts and count their tokens."""

    url: Annotated[str, Field(min_length=8, max_length=2048, pattern=r"^https?://[^\t\n\f\r ]+$")]
    """The API's base URL, up to and including `/v1` (`http://qwen-7b.models.svc:8000/v1`)."""
    model: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\t\n\f\r ]+$")]
    """The base model's served name (`--served-model-name`; one of the ids `/v1/models` lists). It must serve the
    weights of `spec.model`, whose tokenizer renders the prompts."""
    api_key_secret: ApiKeySecret | None = None
    """A Secret key holding the API key (exposed to stage pods as OPENAI_API_KEY); unset: no key is sent."""
    timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = 600
    """How long one request may take before it is retried."""
    max_retries: Annotated[int, Field(ge=0, le=20)] = 5
    """Retries of a request that timed out, lost its connection, or got 408, 409, 429 or 5xx, with exponential
    backoff (honouring `Retry-After`); then the stage fails and its Job retries it."""
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 32
    """Requests in flight at once (one per prompt); the server batches them."""
    adapter: AdapterPlacement = AdapterPlacement.LOCAL
    """Where the evaluate stage runs the fine-tuned adapter: `local` or `server`."""
