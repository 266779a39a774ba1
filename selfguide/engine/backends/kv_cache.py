"""A KV cache that grows into spare room instead of copying itself at every decoding step.

transformers' `DynamicLayer` appends each step's keys and values with `torch.cat`, which copies the whole
cache of every layer at every step: a fifth of input generation's time on 2 CPU cores with ~1,000-token
prompts (measured with py-spy, docs/performance.md). `RoomyLayer` writes into a buffer with room to spare and
grows it by a quarter when full; its `keys` and `values` are views of the filled part, so every other
`DynamicLayer` operation (select and repeat rows, crop, deepcopy) works on them unchanged, and the buffer is
rebuilt from them when such an operation replaced them (selecting or repeating rows lets the old buffer go at
once, as `DynamicLayer` does, so that a whole cache is never held twice).
"""

from __future__ import annotations

from typing import Any, cast

import torch
from transformers import DynamicCache, PretrainedConfig
from transformers.cache_utils import DynamicLayer

MIN_ROOM = 64
"""Tokens of room added at least when a buffer is (re)built."""


class RoomyLayer(DynamicLayer):
    """A `DynamicLayer` whose keys and values are views of preallocated buffers."""

    _room: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length, new = self.get_seq_length(), key_states.shape[-2]
        if not self._fits(length + new):
            capacity = length + new + max(MIN_ROOM, (length + new) // 4)
            self._room = (_with_room(self.keys, key_states, length, capacity),
                          _with_room(self.values, value_states, length, capacity))
        assert self._room is not None
        keys, values = self._room
        keys[..., length:length + new, :].copy_(key_states)
        values[..., length:length + new, :].copy_(value_states)
        self.keys, self.values = keys[..., :length + new, :], values[..., :length + new, :]
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self._room = None  # the keys are a new tensor now: the old buffer holds nothing still needed

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._room = None

    def _fits(self, needed: int) -> bool:
        """Whether `keys` is still a view of the buffer (no row selection or repetition replaced it) with room."""
        if self._room is None or self.keys is None or self.keys.numel() == 0:
            return False
        buffer = self._room[0]
        return (self.keys.data_ptr() == buffer.data_ptr() and self.keys.shape[0] == buffer.shape[0]
                and needed <= buffer.shape[-2])


def _with_room(current: torch.Tensor | None, incoming: torch.Tensor, length: int, capacity: int) -> torch.Tensor:
    """A buffer of `capacity` positions holding the `length` cached ones of `current`."""
    shape = list(incoming.shape)
    shape[-2] = capacity
    buffer = incoming.new_empty(shape)
    if length and current is not None:
        buffer[..., :length, :].copy_(current)
    return buffer


def roomy_cache(config: PretrainedConfig) -> DynamicCache:
    """transformers' DynamicCache for `config`, its full-attention layers made roomy (sliding-window and other
    special layers keep their own classes)."""
    cache = DynamicCache(config=config)
    cache.layers = [RoomyLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def pad_after_prefix(tensor: torch.Tensor, skip: int, width: int, dim: int) -> torch.Tensor:
    """`tensor` (keys, values or a mask: `skip` prefix positions, then left-padded own ones along `dim`) with
    zeros inserted after the prefix, up to `skip + width` positions."""
    missing = skip + width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.narrow(dim, 0, skip), tensor.new_zeros(shape),
                      tensor.narrow(dim, skip, tensor.shape[dim] - skip)], dim=dim)


def join_rows(caches: list[DynamicCache], config: PretrainedConfig, skip: int, width: int) -> DynamicCache:
    """One cache holding the rows of `caches` (roomy ones, prefilled in groups of similar length), each padded
    after the `skip` prefix positions to `width` own positions (the mask hides the padding). `caches` are
    emptied layer by layer as they are joined, so that only one layer is ever held twice."""
    joined = roomy_cache(config)
    for index, layer in enumerate(joined.layers):
        parts = [cast(RoomyLayer, cache.layers[index]) for cache in caches]
        keys = [pad_after_prefix(cast(torch.Tensor, part.keys), skip, width, dim=2) for part in parts]
        values = [pad_after_prefix(cast(torch.Tensor, part.values), skip, width, dim=2) for part in parts]
        for part in parts:
            part.keys = part.values = part._room = None
        cast(RoomyLayer, layer).update(torch.cat(keys), torch.cat(values))
    return joined
