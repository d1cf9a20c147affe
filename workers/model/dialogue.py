"""Questions, captions and multi-turn chat about one video, encoding the video once.

A :class:`Conversation` runs the video prefix once and keeps its cache; every turn renders the whole
history with the family's chat template, feeds only the tokens the cache does not hold yet, and
decodes greedily over the kept cache, streaming text pieces as they come.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from workers.model.generation import answer_token_ids, decode_text, greedy_continue
from workers.model.loading import LoadedModel, Prefix
from workers.model.scoring import device_memory_guard, encode_prefix, forward_text
from workers.model.suffixes import ReferenceImage

log = logging.getLogger(__name__)

CAPTION_QUESTION = "Describe what happens in this video in a few sentences."


def _common_length(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Conversation:
    """A dialogue about one video; not shared between threads (the model may be)."""

    def __init__(self, loaded: LoadedModel, rgb: np.ndarray, *, fps: float) -> None:
        self.loaded = loaded
        self._rgb = rgb
        self._fps = fps
        self._messages: list[dict[str, Any]] = []
        self._prefix: Prefix | None = None
        self._head: str | None = None
        self._cached: list[int] = []  # text tokens held in the cache after the video prefix

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self._messages)

    def _turn_ids(self, question: str) -> tuple[list[dict[str, Any]], list[int]]:
        content: list[dict[str, Any]] = [{"type": "text", "text": question}]
        if not self._messages:
            content.insert(0, {"type": "video"})
        messages = self._messages + [{"role": "user", "content": content}]
        head, tail = self.loaded.adapter.split_at_video(self.loaded.adapter.render(messages))
        if self._prefix is None:
            self._prefix = encode_prefix(self.loaded, self._rgb, fps=self._fps, head_text=head)
            self._head = head
        elif head != self._head:
            raise ValueError("the chat template changed the text before the video between turns")
        text = self._prefix.trailing_text + tail
        return messages, self.loaded.tokenizer.encode(text, add_special_tokens=False)

    def _feed(self, ids: list[int]) -> torch.Tensor:
        """Bring the cache to hold ``ids`` after the prefix and return the next-token logits."""
        assert self._prefix is not None
        keep = min(_common_length(self._cached, ids), len(ids) - 1)  # feed at least one token
        if len(self._cached) > keep:
            self._prefix.cache.crop(-(len(self._cached) - keep))
        logits = forward_text(self.loaded, self._prefix, [ids[keep:]], past=keep)
        self._cached = list(ids)
        return logits

    def ask(
        self, question: str, *, max_new_tokens: int = 256, on_token: Callable[[str], None] | None = None
    ) -> str:
        """Answer ``question`` about the video, given the turns so far; stream pieces to ``on_token``."""
        with torch.inference_mode(), device_memory_guard("answering a question"):
            messages, ids = self._turn_ids(question)
            logits = self._feed(ids)
            assert self._prefix is not None
            tokens, added = greedy_continue(
                self.loaded,
                self._prefix,
                logits,
                past=len(ids),
                max_new_tokens=max_new_tokens,
                on_token=on_token,
            )
        self._cached = ids + tokens[:added]
        answer = decode_text(self.loaded, tokens)
        self._messages = messages + [{"role": "assistant", "content": [{"type": "text", "text": answer}]}]
        turn = len(self._messages) // 2
        log.debug("turn %d: %d prompt tokens, %d answer tokens", turn, len(ids), len(tokens))
        return answer


def ask(
    loaded: LoadedModel,
    rgb: np.ndarray,
    *,
    fps: float,
    question: str,
    references: Sequence[ReferenceImage] = (),
    max_new_tokens: int = 256,
    on_token: Callable[[str], None] | None = None,
) -> str:
    """One question about one video, optionally about reference images shown after it ("is this my car?")."""
    if references:
        tokens = answer_token_ids(
            loaded,
            rgb,
            fps=fps,
            question=question,
            references=references,
            max_new_tokens=max_new_tokens,
            on_token=on_token,
        )
        return decode_text(loaded, tokens)
    return Conversation(loaded, rgb, fps=fps).ask(question, max_new_tokens=max_new_tokens, on_token=on_token)


def describe(
    loaded: LoadedModel,
    rgb: np.ndarray,
    *,
    fps: float,
    max_new_tokens: int = 128,
    on_token: Callable[[str], None] | None = None,
) -> str:
    """A short caption of the video."""
    return ask(
        loaded, rgb, fps=fps, question=CAPTION_QUESTION, max_new_tokens=max_new_tokens, on_token=on_token
    )
