"""The window's per-frame video features, kept from its scoring pass for the best-frame search.

Where a family's vision tower encodes every frame on its own (LLaVA-NeXT-Video: CLIP per frame, then a
per-frame pooling and projection), a frame shown as a one-frame video gets exactly that frame's slice of
the window's video features (tests/workers/test_frame_features.py checks it), so the best-frame pass can
skip the processor and a second vision pass and only prefill the one-frame prompts. Qwen pairs
frames in time (a one-frame video is the frame paired with itself) and SmolVLM2's reuse is not verified:
those families encode the one-frame videos again (``keep_video_features`` returns None for them).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from workers.model.loading import LoadedModel

VIDEO_PIXELS = "pixel_values_videos"
ENCODED = "mm_encoder_outputs"  # the model's own argument for vision features computed beforehand


def keep_video_features(loaded: LoadedModel, inputs: dict[str, Any]) -> torch.Tensor | None:
    """Encode the video of ``inputs`` here, in place of the model's forward doing it, and return its
    features per frame (frames, tokens, hidden), in order; None where the family's frames are not
    encoded alone or ``inputs`` holds no video pixels (``inputs`` is then left as it was)."""
    if not loaded.adapter.frames_encoded_alone or VIDEO_PIXELS not in inputs:
        return None
    pixels = inputs.pop(VIDEO_PIXELS)
    encoded = loaded.model.model.get_video_features(pixels, return_dict=True)
    inputs[ENCODED] = {"video": encoded}
    frames = pixels.shape[0] * pixels.shape[1]
    return encoded.pooler_output.reshape(frames, -1, encoded.pooler_output.shape[-1])


def one_frame_ids(loaded: LoadedModel, head: str, tokens: int) -> torch.Tensor:
    """The ids of ``head`` shown one frame of ``tokens`` video tokens, as the processor expands and
    tokenizes it (test_frame_features compares them), without processing any pixels."""
    video = loaded.adapter.video_token
    if head.count(video) != 1:
        raise ValueError(f"the prompt holds {head.count(video)} video tokens, not one")
    text = head.replace(video, video * tokens)
    ids: torch.Tensor = loaded.tokenizer([text], return_tensors="pt")["input_ids"]
    return ids.to(loaded.device)


def one_frame_prompts(loaded: LoadedModel, ids: torch.Tensor, features: torch.Tensor) -> dict[str, Any]:
    """The inputs of ``len(features)`` one-frame videos from the ids of one (``one_frame_ids``) and each
    frame's kept features: what the processor and the vision tower would give for those frames."""
    rows = len(features)
    return {
        "input_ids": ids.expand(rows, -1),
        "attention_mask": torch.ones((rows, ids.shape[1]), dtype=torch.long, device=ids.device),
        ENCODED: {"video": BaseModelOutputWithPooling(pooler_output=features)},
    }
