"""How many sequences fit in one forward pass: from the KV-cache size and free GPU memory."""

from __future__ import annotations

from typing import Any

CPU_BATCH = 16
"""On CPU, larger batches stop paying off on a few cores; memory is rarely the limit."""
MEMORY_FRACTION = 0.8
"""Share of the free GPU memory a batch may plan to use (activations and fragmentation need the rest)."""
MAX_BATCH = 1024


def kv_bytes_per_token(config: Any, dtype_bytes: int) -> int:
    """Bytes of key/value cache one token occupies across all layers."""
    text = getattr(config, "text_config", config)
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return 2 * text.num_hidden_layers * kv_heads * head_dim * dtype_bytes


def batch_for_memory(free_bytes: int, config: Any, dtype_bytes: int, tokens_per_sequence: int) -> int:
    """Sequences whose KV cache (plus a 25% activation margin) fits in `MEMORY_FRACTION` of free memory."""
    per_sequence = kv_bytes_per_token(config, dtype_bytes) * tokens_per_sequence * 1.25
    return max(1, min(MAX_BATCH, int(free_bytes * MEMORY_FRACTION // per_sequence)))
