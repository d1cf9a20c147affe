"""Room in the cache for a greedy decode's tokens (workers.model.cache_room): the same keys, values, logits
and tokens as transformers' concatenating DynamicLayer, without a copy of the cache per token."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

import workers.model.generation as generation
from workers.model.cache_room import RoomLayer, make_room
from workers.model.generation import window_evidence_ids
from workers.model.scoring import score_window


def _kv(rows: int, tokens: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 2, tokens, 4, generator=g), torch.randn(rows, 2, tokens, 4, generator=g)


def _same_story(plain: DynamicLayer, roomy: DynamicLayer) -> list[int]:
    """Drive both layers through what a decode does to them; returns the room's buffer address per step."""
    addresses = []
    steps = [("update", 5), ("update", 1), ("update", 1), ("crop", -1), ("update", 1), ("update", 4)]
    steps += [("repeat", 3), ("update", 1), ("select", [0, 2]), ("update", 1), ("update", 1)]
    for seed, (what, arg) in enumerate(steps):
        for layer in (plain, roomy):
            rows = 1 if layer.keys is None or layer.keys.numel() == 0 else layer.keys.shape[0]
            if what == "update":
                out = layer.update(*_kv(rows, arg, seed))
                assert out[0] is layer.keys and out[1] is layer.values
            elif what == "crop":
                layer.crop(arg)
            elif what == "repeat":
                layer.batch_repeat_interleave(arg)
            else:
                layer.batch_select_indices(torch.tensor(arg))
        assert torch.equal(plain.keys, roomy.keys) and torch.equal(plain.values, roomy.values), (seed, what)
        addresses.append(roomy.keys.data_ptr())
    return addresses


def test_room_layer_holds_what_the_concatenating_layer_holds_and_appends_in_place():
    roomy = DynamicLayer()
    roomy.__class__ = RoomLayer
    roomy.room = 4
    addresses = _same_story(DynamicLayer(), roomy)
    # steps 1-4 (three appends and a crop) stay in the buffer the first append into room made; the repeat
    # and the row selection give new tensors, and the append after each moves into fresh room once
    assert addresses[1] == addresses[2] == addresses[3] == addresses[4]
    assert addresses[5] != addresses[4]  # 4 more tokens than the room had left: moved, with room again
    assert addresses[7] != addresses[6] and addresses[9] != addresses[8] and addresses[10] == addresses[9]


def test_room_lets_go_of_the_rows_a_selection_dropped():
    layer = DynamicLayer()
    layer.__class__ = RoomLayer
    layer.room = 8
    layer.update(*_kv(4, 6, 0))
    layer.update(*_kv(4, 1, 1))
    assert layer._key_room is not None and layer._key_room.shape == (4, 2, 15, 4)
    layer.batch_select_indices(torch.tensor([1]))
    assert layer._key_room is None and layer._value_room is None  # the 4-row buffers are not kept alive
    assert layer.keys.shape == (1, 2, 7, 4)


def test_make_room_switches_only_plain_dynamic_layers():
    class Other(DynamicLayer):
        pass

    cache = DynamicCache.__new__(DynamicCache)
    cache.layers = [DynamicLayer(), Other(), DynamicLayer()]
    make_room(cache, 48)
    assert [type(layer) for layer in cache.layers] == [RoomLayer, Other, RoomLayer]
    assert cache.layers[0].room == 48


def test_evidence_with_room_equals_evidence_by_concatenation(loaded_models, family, clip, monkeypatch):
    """The tokens, and the logits of every step, with room and with transformers' own appends."""
    loaded = loaded_models(family)
    descriptions = ["a dog", "the neighbour's white van by the gate", "smoke"]
    seen: dict[str, list[torch.Tensor]] = {"room": [], "cat": []}
    head = loaded.model.lm_head

    def run(kind: str) -> tuple[list[list[int]], set[type]]:
        hook = head.register_forward_hook(lambda _m, _i, out: seen[kind].append(out.detach().clone()))
        try:
            window = score_window(loaded, clip, fps=4.0, descriptions=descriptions)
            ids = window_evidence_ids(loaded, window, descriptions, [[]] * 3, max_new_tokens=6)
            return ids, {type(layer) for layer in window.prefix.cache.layers}
        finally:
            hook.remove()

    with_room, kinds = run("room")
    assert kinds == {RoomLayer}
    monkeypatch.setattr(generation, "make_room", lambda cache, tokens: None)
    by_concatenation, kinds = run("cat")
    assert kinds == {DynamicLayer}
    assert with_room == by_concatenation and max(len(row) for row in with_room) > 1
    assert len(seen["room"]) == len(seen["cat"]) > 3
    for a, b in zip(seen["room"], seen["cat"], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("tokens", [1, 5])
def test_one_row_answers_with_room_equal_answers_by_concatenation(loaded_models, clip, monkeypatch, tokens):
    loaded = loaded_models("smolvlm2")
    question = "What is happening in the video?"
    with_room = generation.answer_token_ids(loaded, clip, fps=4.0, question=question, max_new_tokens=tokens)
    monkeypatch.setattr(generation, "make_room", lambda cache, tokens: None)
    plain = generation.answer_token_ids(loaded, clip, fps=4.0, question=question, max_new_tokens=tokens)
    assert with_room == plain and len(plain) <= tokens
