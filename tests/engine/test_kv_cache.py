"""RoomyLayer against transformers' own DynamicLayer: the same keys and values after every operation a decoding
loop performs, with far fewer buffer copies."""

from __future__ import annotations

import copy

import torch
from transformers.cache_utils import DynamicLayer

from selfguide.engine.backends import kv_cache
from selfguide.engine.backends.kv_cache import RoomyLayer


def states(rows: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(rows, 3, tokens, 8), torch.randn(rows, 3, tokens, 8)


def same(a: DynamicLayer, b: DynamicLayer) -> bool:
    return torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


def test_it_holds_what_the_dynamic_layer_holds_through_every_decoding_operation():
    torch.manual_seed(0)
    plain, roomy = DynamicLayer(), RoomyLayer()
    steps = [lambda layer: layer.update(*prefill), lambda layer: layer.batch_repeat_interleave(3)]
    prefill = states(2, 40)
    for step in steps:
        step(plain), step(roomy)
    assert same(plain, roomy)
    for index in range(200):
        new = states(6 if index < 50 else 4, 1)
        if index == 50:  # two sequences finish and leave the batch
            keep = torch.tensor([0, 2, 3, 5])
            plain.batch_select_indices(keep), roomy.batch_select_indices(keep)
        if index == 120:  # a copy goes its own way (the kept prefix is deep-copied per batch)
            plain_copy, roomy_copy = copy.deepcopy(plain), copy.deepcopy(roomy)
        plain_out, roomy_out = plain.update(*new), roomy.update(*new)
        assert torch.equal(plain_out[0], roomy_out[0]) and torch.equal(plain_out[1], roomy_out[1])
    assert plain.get_seq_length() == roomy.get_seq_length() == 40 + 200
    extra = states(4, 5)
    plain_copy.update(*extra), roomy_copy.update(*extra)
    assert same(plain_copy, roomy_copy) and same(plain, roomy)
    plain.crop(-30), roomy.crop(-30)
    plain.update(*extra), roomy.update(*extra)
    assert same(plain, roomy) and roomy.get_seq_length() == 240 - 30 + 5


def test_decoding_steps_write_into_room_instead_of_copying_the_cache(monkeypatch):
    rebuilt: list[int] = []
    with_room = kv_cache._with_room
    monkeypatch.setattr(kv_cache, "_with_room", lambda *args: rebuilt.append(args[3]) or with_room(*args))
    roomy = RoomyLayer()
    roomy.update(*states(2, 400))
    for _ in range(256):
        roomy.update(*states(2, 1))
        assert roomy.keys.untyped_storage().data_ptr() == roomy._room[0].untyped_storage().data_ptr()
    # keys and values, built for the prompt, then grown by a quarter twice in 256 steps (not copied 256 times)
    assert rebuilt == [500, 500, 626, 626, 783, 783]
