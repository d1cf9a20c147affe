"""Greedy generation over a kept video prefix: one row (answers, dialogue) or a batch of rows (the
evidence of a window's matched targets).

Evidence continues from the encoding its window was scored with (``scoring.ScoredWindow``): the cache
is cropped back to the video prefix and its one row repeated once per matched target, the evidence
questions are fed as one right-padded batch of suffixes (with their reference images' cached features),
and all rows are decoded together. Each row keeps its own positions and attention mask, so padding never
reaches a logit; a row that emits an end token leaves the batch (its cache row is dropped), the others
go on. The tokens equal those of ``evidence_token_ids``, which encodes the video again per target. Each
decode appends into room made for its new tokens (``workers.model.cache_room``), not by copying the cache.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from workers.model.cache_room import make_room
from workers.model.loading import LoadedModel, Prefix
from workers.model.prompts import evidence_question
from workers.model.scoring import (
    BATCH_TOKEN_BUDGET,
    ScoredWindow,
    device_memory_guard,
    encode_prefix,
    forward_suffixes,
    forward_text,
    per_target,
    question_suffixes,
)
from workers.model.suffixes import ReferenceImage, Suffix

# Removed from generated text: control characters other than newline and tab (NUL breaks PostgreSQL text).
_CONTROL = {c: None for c in range(32) if chr(c) not in "\n\t"} | {0x7F: None}


def greedy_continue(
    loaded: LoadedModel,
    prefix: Prefix,
    first_logits: torch.Tensor,
    *,
    past: int,
    max_new_tokens: int,
    on_token: Any = None,
    shift: int = 0,
) -> tuple[list[int], int]:
    """Greedy decoding over a one-row cache; returns (new token ids, tokens added to the cache)."""
    tokens: list[int] = []
    logits = first_logits
    added = 0
    eos = set(loaded.eos_ids)
    tok = loaded.tokenizer
    shown = ""
    make_room(prefix.cache, max_new_tokens)
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
        logits = forward_text(loaded, prefix, [[nxt]], past=past + added, shift=shift)
        added += 1
    if on_token is not None:
        text = tok.decode(tokens, skip_special_tokens=True)
        if len(text) > len(shown):
            on_token(text[len(shown) :].translate(_CONTROL))
    return tokens, added


def answer_token_ids(
    loaded: LoadedModel,
    rgb: np.ndarray,
    *,
    fps: float,
    question: str,
    references: Sequence[ReferenceImage] = (),
    max_new_tokens: int = 48,
    on_token: Callable[[str], None] | None = None,
) -> list[int]:
    """Greedy answer token ids to one question about the video (after its reference images, if any)."""
    head, _ = loaded.adapter.question_parts(question, images=len(references))
    with torch.inference_mode(), device_memory_guard("answering a question"):
        prefix = encode_prefix(loaded, rgb, fps=fps, head_text=head)
        row = question_suffixes(loaded, prefix, head, [question], [references])[0]
        logits = forward_suffixes(loaded, prefix, [row])
        tokens, _ = greedy_continue(
            loaded,
            prefix,
            logits,
            past=len(row.ids),
            shift=row.span - len(row.ids),
            max_new_tokens=max_new_tokens,
            on_token=on_token,
        )
    return tokens


def evidence_token_ids(
    loaded: LoadedModel,
    rgb: np.ndarray,
    *,
    fps: float,
    description: str,
    references: Sequence[ReferenceImage] = (),
    max_new_tokens: int = 48,
) -> list[int]:
    """Greedy answer token ids to the evidence question of one target over a fresh encoding of the video
    (the reference the window's batched evidence is tested against)."""
    question = evidence_question(description, len(references))
    return answer_token_ids(
        loaded, rgb, fps=fps, question=question, references=references, max_new_tokens=max_new_tokens
    )


def decode_text(loaded: LoadedModel, tokens: list[int]) -> str:
    """Generated text fit to store and print: control characters (NUL included, which PostgreSQL's text
    type refuses) are removed; byte-level tokenizers can produce them from any model, not only random ones."""
    return loaded.tokenizer.decode(tokens, skip_special_tokens=True).translate(_CONTROL).strip()


def rows_at_prefix(loaded: LoadedModel, prefix: Prefix, rows: int) -> None:
    """Crop the cache back to the video prefix and make it ``rows`` copies of its first row."""
    extra = prefix.cache.get_seq_length() - prefix.length
    if extra > 0:
        prefix.cache.crop(-extra)
    prefix.cache.batch_select_indices(torch.zeros(rows, dtype=torch.long, device=loaded.device))


def prefill_rows(loaded: LoadedModel, prefix: Prefix, rows: list[Suffix]) -> torch.Tensor:
    """Feed ``rows`` as one padded batch over the prefix (repeated per row); the next-token logits."""
    rows_at_prefix(loaded, prefix, len(rows))
    return forward_suffixes(loaded, prefix, rows)


def greedy_rows(
    loaded: LoadedModel,
    prefix: Prefix,
    rows: list[Suffix],
    first_logits: torch.Tensor,
    *,
    max_new_tokens: int,
) -> list[list[int]]:
    """Greedy decoding of every row at once, after ``prefill_rows``: each row stops at its end token or
    at ``max_new_tokens`` and then leaves the batch."""
    device, adapter = loaded.device, loaded.adapter
    width = max(len(r.ids) for r in rows)
    mask = torch.zeros((len(rows), prefix.length + width), dtype=torch.long, device=device)
    mask[:, : prefix.length] = 1
    for i, row in enumerate(rows):
        mask[i, prefix.length : prefix.length + len(row.ids)] = 1
    starts = [prefix.next_position + r.span for r in rows]  # position of each row's first new token
    tokens: list[list[int]] = [[] for _ in rows]
    eos = set(loaded.eos_ids)
    live = list(range(len(rows)))  # the row each cache row belongs to
    logits = first_logits
    make_room(prefix.cache, max_new_tokens)
    while live and max_new_tokens > 0:
        keep = []
        for at, (i, nxt) in enumerate(zip(live, logits.argmax(dim=-1).tolist(), strict=True)):
            if nxt in eos:
                continue
            tokens[i].append(int(nxt))
            if len(tokens[i]) < max_new_tokens:
                keep.append(at)
        if not keep:
            break
        if len(keep) < len(live):
            chosen = torch.tensor(keep, dtype=torch.long, device=device)
            prefix.cache.batch_select_indices(chosen)
            mask = mask[chosen]
            live = [live[at] for at in keep]
        mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
        ids = torch.tensor([[tokens[i][-1]] for i in live], dtype=torch.long, device=device)
        positions = torch.stack(
            [adapter.row_positions(None, starts[i] + len(tokens[i]) - 1, 1) for i in live], dim=-2
        )
        out = loaded.model.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions.to(device),
            cache=prefix.cache,
            use_cache=True,
        )
        logits = loaded.model.lm_head(out.last_hidden_state[:, -1]).float()
    return tokens


def window_evidence_ids(
    loaded: LoadedModel,
    window: ScoredWindow,
    descriptions: list[str],
    references: Sequence[Sequence[ReferenceImage]],
    *,
    max_new_tokens: int,
) -> list[list[int]]:
    """Evidence token ids of each given target, continuing from the window's kept encoding (no second
    vision pass, no second prefill of the video): one batched greedy decode, in chunks of at most
    ``BATCH_TOKEN_BUDGET`` cached prefix tokens."""
    references = per_target(descriptions, references)
    if not descriptions:
        return []
    prefix = window.prefix
    questions = [evidence_question(d, len(r)) for d, r in zip(descriptions, references, strict=True)]
    per_chunk = max(1, BATCH_TOKEN_BUDGET // prefix.length)
    out: list[list[int]] = []
    with torch.inference_mode(), device_memory_guard(f"generating evidence for {len(descriptions)} targets"):
        rows = question_suffixes(loaded, prefix, window.head, questions, list(references))
        for first in range(0, len(rows), per_chunk):
            chunk = rows[first : first + per_chunk]
            logits = prefill_rows(loaded, prefix, chunk)
            out += greedy_rows(loaded, prefix, chunk, logits, max_new_tokens=max_new_tokens)
        rows_at_prefix(loaded, prefix, 1)  # one row at the prefix again: another continuation may follow
    return out


def window_evidence(
    loaded: LoadedModel,
    window: ScoredWindow,
    descriptions: list[str],
    references: Sequence[Sequence[ReferenceImage]],
    *,
    max_new_tokens: int,
) -> list[str]:
    """A short text per target about where and how it appears in the window; run only for matches."""
    ids = window_evidence_ids(loaded, window, descriptions, references, max_new_tokens=max_new_tokens)
    return [decode_text(loaded, tokens) for tokens in ids]
