"""`model.dtype: mixed`: float32 weights, activations and KV cache; the matrix products of linear layers in bfloat16.

On a CPU with bf16 instructions (AVX512-BF16, AMX) a linear layer computed from a bf16 copy of its weights runs
2-2.6x faster than in float32 from 10 rows up, and the output layer (vocabulary x hidden) ~5x faster on the 10
rows of a decoding step (docs/performance.md). A model loaded wholly in bf16 decodes *slower* there, because its
attention and KV-cache updates have no fast bf16 path; so only the linear layers change precision: their input is
rounded to bf16, their output comes back in the input's dtype, and attention, norms, the cache and sampling stay
float32. The float32 parameters stay what the model is (saved, trained, adapted); the bf16 copies are buffers
that are never saved.
"""

from __future__ import annotations

from functools import partial
from typing import cast

import torch
import torch.nn.functional as F

COMPUTE_DTYPE = torch.bfloat16


def compute_linear_layers_in_bfloat16(model: torch.nn.Module) -> int:
    """Make every plain `nn.Linear` of `model` compute from a bf16 copy of its weights (call it before an adapter
    wraps them: the adapter's own layers stay float32); how many layers changed."""
    layers = [module for module in model.modules() if type(module) is torch.nn.Linear]
    for layer in layers:
        layer.register_buffer("weight16", layer.weight.detach().to(COMPUTE_DTYPE), persistent=False)
        bias = None if layer.bias is None else layer.bias.detach().to(COMPUTE_DTYPE)
        layer.register_buffer("bias16", bias, persistent=False)
        layer.forward = partial(_bfloat16_linear, layer)  # type: ignore[method-assign]  # per layer, as accelerate's hooks
    return len(layers)


def _bfloat16_linear(layer: torch.nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    weight, bias = cast(torch.Tensor, layer.weight16), cast(torch.Tensor | None, layer.bias16)
    return F.linear(hidden.to(COMPUTE_DTYPE), weight, bias).to(hidden.dtype)
