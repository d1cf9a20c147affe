"""Reference images encoded the way the clip's frames are: a one-frame video each (LLaVA-NeXT-Video).

LLaVA-NeXT-Video sees every frame of a clip as one 336-px view pooled to 12 x 12 = 144 tokens, while its
image path (anyres) gives a reference image a base view and 2-4 tiles: 1,393 tokens for a 4:3 image and
about 2,900 for a large one, 10-20 times a frame of the video the reference is compared with. Eight
targets of which four carried such an image cost 2.2 times eight word-only targets (bench/scoring.py).
Here the reference is padded to a square (nothing cropped away, as the video processor's center crop
would), encoded by the model's own video path as a one-frame video, and its 144 features take the place
of 144 image tokens in the question. The full forward of that prompt (``full_prompt_inputs``) hands the
model the same features through its ``mm_encoder_outputs`` argument, so the model places every vision
feature itself; tests/workers/test_reference_scoring.py compares it with the cached suffixes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from workers.model.loading import LoadedModel, on_device


def square(rgb: np.ndarray, fill: Sequence[int]) -> np.ndarray:
    """``rgb`` centred on a square canvas of ``fill`` (the processor's mean colour, what it reads as 0)."""
    height, width = rgb.shape[:2]
    side = max(height, width)
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = np.asarray(fill, dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = rgb
    return canvas


def reference_features(loaded: LoadedModel, images: Sequence[np.ndarray]) -> torch.Tensor:
    """Each image's features as a one-frame video: (images, tokens per image, hidden)."""
    processor = loaded.processor.video_processor
    fill = [round(255 * m) for m in processor.image_mean]
    videos = [square(np.ascontiguousarray(image, dtype=np.uint8), fill)[None] for image in images]
    pixels = processor(videos=videos, return_tensors="pt", do_sample_frames=False)["pixel_values_videos"]
    pixels = pixels.to(loaded.device, loaded.dtype)
    encoded = loaded.model.model.get_video_features(pixels, return_dict=True)
    features: torch.Tensor = encoded.pooler_output
    return features.reshape(len(videos), -1, features.shape[-1]).to(loaded.dtype)


def text_ids(loaded: LoadedModel, text: str, tokens_per_image: int) -> list[int]:
    """The token ids of ``text`` (no special tokens added) with each image token repeated once per feature
    of its image."""
    token = loaded.processor.image_token
    expanded = text.replace(token, token * tokens_per_image)
    ids: list[int] = loaded.tokenizer.encode(expanded, add_special_tokens=False)
    return ids


def suffix(loaded: LoadedModel, text: str, images: Sequence[np.ndarray]) -> tuple[list[int], torch.Tensor]:
    """The token ids of a suffix ``text`` holding ``images`` and the features of its image tokens."""
    features = reference_features(loaded, images)
    return text_ids(loaded, text, features.shape[1]), features.reshape(-1, features.shape[-1])


def full_prompt_inputs(
    loaded: LoadedModel, rgb: np.ndarray, fps: float, text: str, images: Sequence[np.ndarray]
) -> dict[str, Any]:
    """Inputs of one whole prompt (the video, then ``images``) for the model's forward or ``generate``:
    the video's and the images' features precomputed by the model's own video path, handed to it in
    ``mm_encoder_outputs`` for it to place (it refuses pixels and precomputed features together)."""
    # The processor refuses image tokens without image pixels: it expands the text up to the video token,
    # the tokenizer the rest (a special token splits the text, so the ids are those of the whole).
    head, tail = loaded.adapter.split_at_video(text)
    inputs = dict(loaded.processor(text=[head], return_tensors="pt", **loaded.adapter.video_kwargs(rgb, fps)))
    features = reference_features(loaded, images)
    tail_ids = torch.tensor([text_ids(loaded, tail, features.shape[1])], dtype=inputs["input_ids"].dtype)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], tail_ids], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    inputs = on_device(loaded, inputs)
    pixels = inputs.pop("pixel_values_videos")
    video = loaded.model.model.get_video_features(pixels, return_dict=True)
    inputs["mm_encoder_outputs"] = {
        "video": video,
        "image": BaseModelOutputWithPooling(pooler_output=list(features)),
    }
    return inputs
