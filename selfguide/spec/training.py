"""The `train` stage: LoRA (default) or full fine-tuning on the self-generated data."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from selfguide.spec.base import SpecModel

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The `max_lora_rank` values vLLM accepts (`MaxLoRARanks` in vllm/config/lora.py); an adapter is served with
the smallest one at least its rank."""


class TrainingMethod(StrEnum):
    LORA = "lora"
    FULL = "full"


class LoraSpec(SpecModel):
    """LoRA settings, named as in peft's LoraConfig."""

    r: Annotated[int, Field(ge=1, le=VLLM_LORA_RANKS[-1])] = 16
    """Rank of the update matrices; at most 512, the largest rank vLLM serves."""
    alpha: Annotated[int, Field(ge=1, le=4096)] = 32
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    target_modules: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=128)]] | None, Field(min_length=1, max_length=64)
    ] = None
    """Module names to adapt; unset picks the attention and MLP projections of the architecture."""


class TrainingSpec(SpecModel):
    """Fine-tuning hyper-parameters."""

    method: TrainingMethod = TrainingMethod.LORA
    lora: LoraSpec = LoraSpec()
    epochs: Annotated[int, Field(ge=1, le=100)] = 3
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 2e-4
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 8
    """Examples per optimizer step on one device, before gradient accumulation."""
    gradient_accumulation_steps: Annotated[int, Field(ge=1, le=1024)] = 1
    max_length: Annotated[int, Field(ge=16, le=131_072)] = 1024
    """Longest training sequence (prompt plus output) in tokens; longer examples are left-truncated."""
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.03
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    gradient_checkpointing: bool = False
    """Recompute activations during the backward pass instead of keeping them: far less memory for long
    sequences or large batches, for about a third more compute. The trained model is the same."""
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    merge_adapter: bool = False
    """Also write the base model with the adapter merged in (`merged/`), for servers without LoRA."""
