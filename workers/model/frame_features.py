"""The window's per-frame video features, kept from its scoring pass for the best-frame search.

Where a family's vision tower encodes every frame on its own, a frame shown as a one-frame video gets
exactly that frame's slice of the window's video features (tests/workers/test_frame_features.py checks it),
so the best-frame pass can skip the processor and a second vision pass and only prefill the one-frame
prompts. LLaVA-NeXT-Video: CLIP per frame, then a per-frame pooling and projection. SmolVLM2: each frame
of a video is one image to SigLIP and to the pixel-shuffle connector (``get_image_features``), the frames
all of one size (no padding, no splitting for videos). Qwen pairs frames in time (a one-frame video is the
frame paired with itself): it encodes the one-frame videos again (``keep_video_features`` returns None).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from workers.model.loading import LoadedModel

ENCODED = "mm_encoder_outputs"  # the model's own argument for vision features computed beforehand
ONE_FRAME_FPS = 1.0  # a one-frame video has no rate; the value the single-frame scores always used
# per family: (the processor's key for the video's pixels, the model's key for the encoded ones)
KEYS = {"llava_next_video": ("pixel_values_videos", "video"), "smolvlm2": ("pixel_values", "image")}


def keep_video_features(loaded: LoadedModel, inputs: dict[str, Any]) -> torch.Tensor | None:
    """Encode the video of ``inputs`` here, in place of the model's forward doing it, and return its
    features per frame (frames, tokens, hidden), in order; None where the family's frames are not
    encoded alone or ``inputs`` holds no video pixels (``inputs`` is then left as it was)."""
    family = loaded.adapter.family
    if not loaded.adapter.frames_encoded_alone or KEYS[family][0] not in inputs:
        return None
    pixels_key, encoded_key = KEYS[family]
    pixels = inputs.pop(pixels_key)
    inner = loaded.model.model
    if family == "smolvlm2":  # every frame an image; all-zero padding images are dropped, none in a video
        encoded = inner.get_image_features(pixels, inputs.pop("pixel_attention_mask", None), return_dict=True)
        features = torch.cat(list(encoded.pooler_output))
        frames = int(encoded.last_hidden_state.shape[0])
    else:
        encoded = inner.get_video_features(pixels, return_dict=True)
        features = encoded.pooler_output
        frames = int(pixels.shape[0] * pixels.shape[1])
    inputs[ENCODED] = {encoded_key: encoded}
    return features.reshape(frames, -1, features.shape[-1])


def one_frame_ids(loaded: LoadedModel, head: str, tokens: int, frame: np.ndarray) -> torch.Tensor:
    """The ids of ``head`` shown one frame of ``tokens`` video tokens, as the processor expands and
    tokenizes it (test_frame_features compares them): without processing any pixels where the video token
    is repeated once per vision token (LLaVA-NeXT-Video); SmolVLM2's processor writes each frame's time
    and image markers around its tokens, so ``frame`` (H, W, 3), any frame of the window, is processed."""
    video = loaded.adapter.video_token
    if head.count(video) != 1:
        raise ValueError(f"the prompt holds {head.count(video)} video tokens, not one")
    if loaded.adapter.family == "smolvlm2":
        kwargs = loaded.adapter.video_kwargs(np.ascontiguousarray(frame[None], dtype=np.uint8), ONE_FRAME_FPS)
        processed: torch.Tensor = loaded.processor(text=[head], return_tensors="pt", **kwargs)["input_ids"]
        if int((processed == loaded.image_token_id).sum()) != tokens:
            raise ValueError(
                f"a frame holds {int((processed == loaded.image_token_id).sum())} tokens, not {tokens}"
            )
        return processed.to(loaded.device)
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
        ENCODED: {KEYS[loaded.adapter.family][1]: BaseModelOutputWithPooling(pooler_output=features)},
    }
