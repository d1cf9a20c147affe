"""Calibrated yes/no scores for many targets over one encoding of the video.

For each target the model is asked ``question_for(description)``; the score is P(yes) read from the
logits of the first answer token, normalised over the yes and no token variants (VQAScore). The video
comes first in the prompt, so it is a prefix shared by every question: it is encoded once with a cache,
then the question suffixes (which hold no vision tokens) are scored either as one right-padded batch
over a repeated cache ("batched") or one after another, cropping the cache back after each ("crop").
Crop-back copies nothing, so it is the choice when memory matters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch

from vigil.errors import OutOfMemory
from workers.models import LoadedModel, Prefix

log = logging.getLogger(__name__)

PROMPT_VERSION = 1
QUESTION_TEMPLATE = "Does this video show {description}? Answer yes or no."
EVIDENCE_TEMPLATE = "Describe briefly where and how {description} appears."
# Batched scoring repeats the prefix cache once per target; above this many cached tokens
# (targets x prefix length) "auto" crops back instead.
BATCH_TOKEN_BUDGET = 64 * 1024

Strategy = Literal["auto", "batched", "crop"]
# Removed from generated text: control characters other than newline and tab (NUL breaks PostgreSQL text).
_CONTROL = {c: None for c in range(32) if chr(c) not in "\n\t"} | {0x7F: None}


def question_for(description: str) -> str:
    """The yes/no question asked for one target (versioned by PROMPT_VERSION)."""
    return QUESTION_TEMPLATE.format(description=description.strip().rstrip("?.!"))


@contextmanager
def device_memory_guard(what: str) -> Iterator[None]:
    """Translate CUDA out-of-memory into OutOfMemory at the boundary."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        raise OutOfMemory(f"out of device memory while {what}") from exc


def _check_frames(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 3:  # one image: a one-frame video
        rgb = rgb[None]
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.shape[0] < 1:
        raise ValueError(f"expected frames shaped (T, H, W, 3), got {rgb.shape}")
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def video_inputs(loaded: LoadedModel, rgb: np.ndarray, fps: float, text: str) -> dict[str, Any]:
    """Processor inputs for one prompt text holding one video token, on the model's device."""
    adapter = loaded.adapter
    kwargs = adapter.video_kwargs(_check_frames(rgb), fps)
    inputs = loaded.processor(text=[text], return_tensors="pt", **kwargs)
    out: dict[str, Any] = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(loaded.device)
            if value.is_floating_point():
                value = value.to(loaded.dtype)
        out[key] = value
    return out


def _prefix_cut(loaded: LoadedModel, input_ids: torch.Tensor) -> int:
    boundary = loaded.adapter.boundary_ids()
    ids = input_ids[0].tolist()
    last = max((i for i, tok in enumerate(ids) if tok in boundary), default=-1)
    if last < 0:
        raise ValueError("the processed prompt holds no vision token")
    return last + 1


def encode_prefix(
    loaded: LoadedModel, rgb: np.ndarray, *, fps: float, head_text: str, keep_logits: bool = False
) -> Prefix:
    """Run the video prefix (``head_text`` ends with the video token) once and keep its cache."""
    inputs = video_inputs(loaded, rgb, fps, head_text)
    cut = _prefix_cut(loaded, inputs["input_ids"])
    trailing = loaded.tokenizer.decode(inputs["input_ids"][0, cut:].tolist(), skip_special_tokens=False)
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        if key in inputs:
            inputs[key] = inputs[key][:, :cut]
    position_ids, next_position = loaded.adapter.prefix_positions(loaded.model, inputs)
    out = loaded.model(**inputs, position_ids=position_ids, use_cache=True, logits_to_keep=1)
    logits = out.logits[:, -1].float() if keep_logits else None
    return Prefix(
        cache=out.cache, length=cut, next_position=next_position, trailing_text=trailing, logits=logits
    )


def suffix_ids(loaded: LoadedModel, prefix: Prefix, tail_texts: list[str]) -> list[list[int]]:
    """Token ids of each text that follows the prefix (no vision tokens in any of them)."""
    tok = loaded.tokenizer
    return [tok.encode(prefix.trailing_text + tail, add_special_tokens=False) for tail in tail_texts]


def forward_text(
    loaded: LoadedModel, prefix: Prefix, rows: list[list[int]], *, past: int = 0
) -> torch.Tensor:
    """Feed right-padded token rows after the cached prefix (+ ``past`` cached text tokens).

    The cache must already hold ``len(rows)`` rows. Returns the logits at each row's last real token.
    """
    device = loaded.device
    batch, width = len(rows), max(len(r) for r in rows)
    pad = loaded.tokenizer.pad_token_id or 0
    ids = torch.full((batch, width), pad, dtype=torch.long, device=device)
    mask = torch.zeros((batch, prefix.length + past + width), dtype=torch.long, device=device)
    mask[:, : prefix.length + past] = 1
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long, device=device)
        mask[i, prefix.length + past : prefix.length + past + len(row)] = 1
    positions = loaded.adapter.text_positions(prefix.next_position + past, width, batch, device)
    out = loaded.model.model(
        input_ids=ids, attention_mask=mask, position_ids=positions, cache=prefix.cache, use_cache=True
    )
    last = torch.tensor([len(r) - 1 for r in rows], device=device)
    hidden = out.last_hidden_state[torch.arange(batch, device=device), last]
    return loaded.model.lm_head(hidden).float()


def p_yes(loaded: LoadedModel, logits: torch.Tensor) -> list[float]:
    """P(yes) per row: softmax over logsumexp(yes variants) vs logsumexp(no variants)."""
    yes = torch.logsumexp(logits[:, list(loaded.yes_ids)], dim=-1)
    no = torch.logsumexp(logits[:, list(loaded.no_ids)], dim=-1)
    return torch.sigmoid(yes - no).tolist()


def _tails(loaded: LoadedModel, descriptions: list[str]) -> tuple[str, list[str]]:
    heads, tails = zip(*(loaded.adapter.question_parts(question_for(d)) for d in descriptions), strict=True)
    if len(set(heads)) != 1:
        raise ValueError("the chat template puts question text before the video; cannot share the prefix")
    return heads[0], list(tails)


def _pick(strategy: Strategy, n: int, prefix_len: int) -> Literal["batched", "crop"]:
    if strategy != "auto":
        return strategy
    return "batched" if n * prefix_len <= BATCH_TOKEN_BUDGET else "crop"


def score_targets(
    loaded: LoadedModel,
    rgb: np.ndarray,
    *,
    fps: float,
    descriptions: list[str],
    strategy: Strategy = "auto",
) -> list[float]:
    """P(yes) per description, encoding the video once."""
    if not descriptions:
        return []
    head, tails = _tails(loaded, descriptions)
    with torch.inference_mode(), device_memory_guard(f"scoring {len(descriptions)} targets"):
        prefix = encode_prefix(loaded, rgb, fps=fps, head_text=head)
        rows = suffix_ids(loaded, prefix, tails)
        chosen = _pick(strategy, len(rows), prefix.length)
        if chosen == "batched":
            if len(rows) > 1:
                prefix.cache.batch_repeat_interleave(len(rows))
            logits = forward_text(loaded, prefix, rows)
        else:
            parts = []
            for row in rows:
                parts.append(forward_text(loaded, prefix, [row]))
                prefix.cache.crop(-len(row))
            logits = torch.cat(parts)
        scores = p_yes(loaded, logits)
    log.debug("scored %d targets over %d prefix tokens (%s)", len(rows), prefix.length, chosen)
    return scores


def score_targets_naive(
    loaded: LoadedModel, rgb: np.ndarray, *, fps: float, descriptions: list[str]
) -> list[float]:
    """P(yes) per description with one full forward (video included) each: the reference."""
    scores: list[float] = []
    with torch.inference_mode(), device_memory_guard("scoring targets one by one"):
        for description in descriptions:
            head, tail = loaded.adapter.question_parts(question_for(description))
            inputs = video_inputs(loaded, rgb, fps, head + tail)
            out = loaded.model(**inputs, logits_to_keep=1)
            scores.extend(p_yes(loaded, out.logits[:, -1].float()))
    return scores


def greedy_continue(
    loaded: LoadedModel,
    prefix: Prefix,
    first_logits: torch.Tensor,
    *,
    past: int,
    max_new_tokens: int,
    on_token: Any = None,
) -> tuple[list[int], int]:
    """Greedy decoding over a one-row cache; returns (new token ids, tokens added to the cache)."""
    tokens: list[int] = []
    logits = first_logits
    added = 0
    eos = set(loaded.eos_ids)
    tok = loaded.tokenizer
    shown = ""
    for _ in range(max_new_tokens):
        nxt = int(logits[0].argmax().item())
        if nxt in eos:
            break
        tokens.append(nxt)
        if on_token is not None:
            text = tok.decode(tokens, skip_special_tokens=True)
            if len(text) > len(shown) and not text.endswith("\ufffd"):
                on_token(text[len(shown) :].translate(_CONTROL))
                shown = text
        if len(tokens) == max_new_tokens:
            break
        logits = forward_text(loaded, prefix, [[nxt]], past=past + added)
        added += 1
    if on_token is not None:
        text = tok.decode(tokens, skip_special_tokens=True)
        if len(text) > len(shown):
            on_token(text[len(shown) :].translate(_CONTROL))
    return tokens, added


def evidence_token_ids(
    loaded: LoadedModel, rgb: np.ndarray, *, fps: float, description: str, max_new_tokens: int = 48
) -> list[int]:
    """Greedy answer token ids (at most ``max_new_tokens``) to the evidence question."""
    question = EVIDENCE_TEMPLATE.format(description=description.strip().rstrip("?.!"))
    head, tail = loaded.adapter.question_parts(question)
    with torch.inference_mode(), device_memory_guard("generating evidence"):
        prefix = encode_prefix(loaded, rgb, fps=fps, head_text=head)
        row = suffix_ids(loaded, prefix, [tail])[0]
        logits = forward_text(loaded, prefix, [row])
        tokens, _ = greedy_continue(loaded, prefix, logits, past=len(row), max_new_tokens=max_new_tokens)
    return tokens


def generate_evidence(
    loaded: LoadedModel, rgb: np.ndarray, *, fps: float, description: str, max_new_tokens: int = 48
) -> str:
    """A short text about where and how ``description`` appears (run only for matched windows)."""
    tokens = evidence_token_ids(loaded, rgb, fps=fps, description=description, max_new_tokens=max_new_tokens)
    return decode_text(loaded, tokens)



def decode_text(loaded: LoadedModel, tokens: list[int]) -> str:
    """Generated text fit to store and print: control characters (NUL included, which PostgreSQL's text
    type refuses) are removed; byte-level tokenizers can produce them from any model, not only random ones."""
    return loaded.tokenizer.decode(tokens, skip_special_tokens=True).translate(_CONTROL).strip()
