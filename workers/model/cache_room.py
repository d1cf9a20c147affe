"""Room in a kept cache for the tokens a greedy decode will add, so each step writes its keys and values in
place instead of copying the whole cache.

transformers' ``DynamicLayer.update`` appends by ``torch.cat``: every generated token copies every layer's
keys and values. Over a window's video prefix repeated once per matched target (8 rows x ~650 tokens of
SmolVLM2-500M: 7 MB a tensor, 64 tensors) each copy took about 2 ms on the CPU (torch.profiler,
``aten::cat``); with the room, evidence for 8 targets x 48 tokens took about 7 % less (fp32: 13.4 / 12.5 s
-> 12.5 / 11.7 s), the rest being the weights read per token. ``make_room`` turns the cache's layers into
``RoomLayer``s: the next append moves the layer into buffers with ``tokens`` spare positions (one copy),
and the appends after it write into that room. The layer's ``keys`` and ``values`` stay what
``DynamicLayer`` would hold (views of the buffers' first ``length`` positions), so attention reads the same
numbers in the same order: the tokens are identical (tests/workers/test_cache_room.py). Whatever replaces
the tensors (``crop`` keeps the buffers; ``batch_select_indices`` when a row ends and
``batch_repeat_interleave`` let them go) is noticed at the next append, which moves into fresh room again.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicLayer


class RoomLayer(DynamicLayer):
    """A ``DynamicLayer`` that appends into spare room (``room`` positions beyond what it holds)."""

    room = 0
    _key_room: torch.Tensor | None = None
    _value_room: torch.Tensor | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        held = self.get_seq_length()
        if not held:
            return super().update(key_states, value_states, *args, **kwargs)
        length = held + key_states.shape[-2]
        if not self._fits(length):
            self._key_room = self._moved(self.keys, length)
            self._value_room = self._moved(self.values, length)
        assert self._key_room is not None and self._value_room is not None
        self._key_room[..., held:length, :] = key_states
        self._value_room[..., held:length, :] = value_states
        self.keys = self._key_room[..., :length, :]
        self.values = self._value_room[..., :length, :]
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._key_room = self._value_room = None  # new tensors: the room must not hold the old rows alive
        super().batch_repeat_interleave(repeats)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._key_room = self._value_room = None
        super().batch_select_indices(indices)

    def _fits(self, length: int) -> bool:
        """Whether the held tensors are still the head of the buffers and the buffers have ``length``."""
        buffers = self._key_room, self._value_room
        held = self.keys, self.values
        return all(
            buf is not None
            and t is not None
            and t.data_ptr() == buf.data_ptr()
            and t.shape[:-2] == buf.shape[:-2]
            and t.stride() == buf.stride()
            and length <= buf.shape[-2]
            for buf, t in zip(buffers, held, strict=True)
        )

    def _moved(self, held: torch.Tensor | None, length: int) -> torch.Tensor:
        assert held is not None
        shape = (*held.shape[:-2], length + self.room, held.shape[-1])
        buffer = held.new_empty(shape)
        buffer[..., : held.shape[-2], :] = held
        return buffer


def make_room(cache: Cache, tokens: int) -> None:
    """Let each of ``cache``'s plain dynamic layers take ``tokens`` more positions without a copy each.

    The model's forward made the layers (``DynamicLayer``); their class is switched in place, since the
    cache object is shared with whoever kept it. Sliding-window and other layer kinds are left alone."""
    for layer in cache.layers:
        if type(layer) is DynamicLayer:
            layer.__class__ = RoomLayer
        if isinstance(layer, RoomLayer):
            layer.room = max(0, tokens)
