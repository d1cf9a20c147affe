"""Loading a video-language model once, and the per-family differences behind one adapter.

``load_model`` reads the configuration first and refuses families Vigil has no adapter for before
any weight is read. A :class:`LoadedModel` holds the model, its processor, the family adapter and the
token ids of the yes/no answer variants. The adapter builds the shared video prefix (the video first,
then the question) and the positions of the text that follows it, so that scoring, evidence and
dialogue all reuse one encoding of the video.

Threads may share a :class:`LoadedModel`: it is never mutated after loading (its cache of reference-image
suffixes locks itself); every call keeps its own key/value cache in a :class:`Prefix`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vigil.config.settings import ModelSettings
from vigil.errors import OutOfMemory, UnsupportedModel
from workers.model.hub import local_files_only, unavailable
from workers.model.precision import apply_precision, pick_device, pick_dtype, resolve_precision
from workers.model.suffixes import SuffixCache

log = logging.getLogger(__name__)

YES_VARIANTS = ("Yes", "yes", " Yes", " yes", "YES", " YES")
NO_VARIANTS = ("No", "no", " No", " no", "NO", " NO")


@dataclass(frozen=True)
class Prefix:
    """The encoded video prefix of one call: its cache and where the text after it starts."""

    cache: Any
    length: int  # tokens in the cache
    next_position: int  # rotary position of the first token after the prefix
    trailing_text: str  # text the processor put after the last vision token (part of every suffix)
    frame_features: torch.Tensor | None = None  # per-frame video features, where the family allows reuse


class FamilyAdapter:
    """What differs between model families; one stateless instance per loaded model."""

    family = "base"
    model_types: tuple[str, ...] = ()
    frames_encoded_alone = False  # a frame's slice of a video's features equals its one-frame features
    references_as_frames = (
        False  # reference images encoded as one-frame videos (workers.model.pooled_references)
    )

    def __init__(self, processor: Any, config: Any) -> None:
        self.processor = processor
        self.config = config
        self.tokenizer = processor.tokenizer
        self.video_token: str = processor.video_token

    # -- prompt text -------------------------------------------------------------------------
    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False
        )

    def split_at_video(self, text: str) -> tuple[str, str]:
        """Split a rendered prompt into (text up to and including the video token, the rest)."""
        idx = text.rfind(self.video_token)
        if idx < 0:
            raise ValueError("the rendered prompt holds no video token")
        end = idx + len(self.video_token)
        return text[:end], text[end:]

    def question_parts(self, question: str, *, images: int = 0) -> tuple[str, str]:
        """(head ending with the video token, tail): the video first, then ``images`` reference images,
        then the question, so that the head is the same for every question and image count."""
        content: list[dict[str, Any]] = [{"type": "video"}]
        content += [{"type": "image"}] * images
        content.append({"type": "text", "text": question})
        return self.split_at_video(self.render([{"role": "user", "content": content}]))

    def image_kwargs(self, images: list[np.ndarray]) -> dict[str, Any]:
        """Processor keyword arguments for the reference images of one prompt."""
        return {"images": list(images)}

    def full_inputs(self, text: str, rgb: np.ndarray, fps: float, images: list[np.ndarray]) -> dict[str, Any]:
        """Processor inputs of a whole prompt holding the video and then ``images`` (the reference)."""
        kwargs = self.video_kwargs(rgb, fps)
        if images:
            kwargs.update(self.image_kwargs(images))
        return dict(self.processor(text=[text], return_tensors="pt", **kwargs))

    # -- processor inputs --------------------------------------------------------------------
    def video_kwargs(self, rgb: np.ndarray, fps: float) -> dict[str, Any]:
        frames = int(rgb.shape[0])
        metadata = {"fps": float(fps), "total_num_frames": frames, "frames_indices": list(range(frames))}
        return {"videos": [rgb], "video_metadata": [metadata], "do_sample_frames": False}

    def boundary_ids(self) -> set[int]:
        """Token ids that can end the vision block; the prefix ends at the last one."""
        return {int(self.tokenizer.convert_tokens_to_ids(self.video_token))}

    def frame_side(self) -> int:
        """Longest frame side worth decoding: the processor keeps no more detail than this."""
        raise NotImplementedError

    # -- positions ---------------------------------------------------------------------------
    def prefix_positions(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor | None, int]:
        """Position ids for the prefix forward (None: the model's default) and the next position."""
        return None, int(inputs["input_ids"].shape[1])

    def text_positions(self, start: int, length: int, batch: int, device: torch.device) -> torch.Tensor:
        pos = torch.arange(start, start + length, device=device)
        return pos.unsqueeze(0).expand(batch, -1)

    def suffix_positions(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor | None, int]:
        """Positions of a suffix holding image tokens, relative to the first position after the prefix
        (None: consecutive), and how many positions it advances."""
        return None, int(inputs["input_ids"].shape[1])

    def row_positions(self, relative: torch.Tensor | None, start: int, width: int) -> torch.Tensor:
        """One row's positions (its relative ones shifted by ``start``), padded to ``width``."""
        return torch.arange(start, start + width)


class LlavaNextVideoAdapter(FamilyAdapter):
    family = "llava_next_video"
    model_types = ("llava_next_video",)
    frames_encoded_alone = True  # CLIP, pooling and projection per frame
    references_as_frames = True  # 144 tokens each, as a frame of the clip, not anyres's 1,393-2,900

    def question_parts(self, question: str, *, images: int = 0) -> tuple[str, str]:
        # The family's template renders every image before the video; the reference images are put
        # in the text instead, after the video, so the video stays the shared prefix.
        image_token = self.processor.image_token
        return super().question_parts(f"{image_token}\n" * images + question)

    def frame_side(self) -> int:
        size = self.processor.video_processor.size
        short = getattr(size, "shortest_edge", None) or size["shortest_edge"]
        return int(short) * 2  # shortest edge is resized to `short`; allow aspect ratios up to 2:1


class QwenVLAdapter(FamilyAdapter):
    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl", "qwen2_vl")

    def frame_side(self) -> int:
        size = self.processor.video_processor.size
        longest = getattr(size, "longest_edge", None) or size["longest_edge"]  # a pixel budget
        return int(math.sqrt(2 * int(longest)))

    def prefix_positions(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor | None, int]:
        # Computed here, never read back from the model's stored rope_deltas (shared between threads).
        # One text token is appended so that get_rope_index also says where text after the video starts.
        ids = inputs["input_ids"]
        one = torch.zeros((ids.shape[0], 1), dtype=ids.dtype, device=ids.device)
        names = ("video_grid_thw", "image_grid_thw", "second_per_grid_ts")
        kwargs = {k: inputs[k] for k in names if inputs.get(k) is not None}
        if inputs.get("attention_mask") is not None:
            kwargs["attention_mask"] = torch.cat([inputs["attention_mask"], one + 1], dim=1)
        types = torch.cat([inputs["mm_token_type_ids"], one.to(inputs["mm_token_type_ids"].dtype)], dim=1)
        extended = torch.cat([ids, one], dim=1)
        position_ids, _ = model.model.get_rope_index(extended, mm_token_type_ids=types, **kwargs)
        return position_ids[:, :, :-1], int(position_ids[0, 0, -1].item())

    def text_positions(self, start: int, length: int, batch: int, device: torch.device) -> torch.Tensor:
        pos = torch.arange(start, start + length, device=device)
        return pos.view(1, 1, -1).expand(3, batch, -1)

    def suffix_positions(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor | None, int]:
        # get_rope_index counts from the previous position, so the suffix's own positions from 0, shifted
        # by the prefix's next position, equal the slice of the whole prompt's positions (3-D M-RoPE).
        ids = inputs["input_ids"]
        position_ids, _ = model.model.get_rope_index(
            ids, mm_token_type_ids=inputs["mm_token_type_ids"], image_grid_thw=inputs["image_grid_thw"]
        )
        relative = position_ids[:, 0]  # (3, length)
        return relative, int(relative.max().item()) + 1

    def row_positions(self, relative: torch.Tensor | None, start: int, width: int) -> torch.Tensor:
        if relative is None:
            return torch.arange(start, start + width).view(1, -1).expand(3, -1)
        span = int(relative.max().item()) + 1
        pad = torch.arange(start + span, start + span + width - relative.shape[-1]).view(1, -1).expand(3, -1)
        return torch.cat([relative.cpu() + start, pad], dim=1)


class SmolVLMAdapter(FamilyAdapter):
    family = "smolvlm2"
    model_types = ("smolvlm",)
    frames_encoded_alone = True  # a video's frames are images to SigLIP and the connector, one by one

    def frame_side(self) -> int:
        size = self.processor.video_processor.size
        return int(getattr(size, "longest_edge", None) or size["longest_edge"])

    def image_kwargs(self, images: list[np.ndarray]) -> dict[str, Any]:
        return {"images": [list(images)]}  # nested: the images of each prompt

    def full_inputs(self, text: str, rgb: np.ndarray, fps: float, images: list[np.ndarray]) -> dict[str, Any]:
        # The processor expands the text of a video and images together but keeps only the video's
        # pixels; the model takes the video's frames and the images as one list, in prompt order.
        inputs = super().full_inputs(text, rgb, fps, images)
        if images and inputs["pixel_values"].shape[1] < rgb.shape[0] + len(images):
            tok = self.processor.image_token
            alone = self.processor(text=[tok * len(images)], return_tensors="pt", **self.image_kwargs(images))
            for key in ("pixel_values", "pixel_attention_mask"):
                inputs[key] = torch.cat([inputs[key], alone[key]], dim=1)
        return inputs

    def boundary_ids(self) -> set[int]:
        # A video becomes frames of <fake_token_around_image><global-img><image>…<fake_token_around_image>.
        tok = self.tokenizer
        tokens = (self.processor.fake_image_token, self.video_token)
        return {int(tok.convert_tokens_to_ids(t)) for t in tokens}


ADAPTERS: tuple[type[FamilyAdapter], ...] = (LlavaNextVideoAdapter, QwenVLAdapter, SmolVLMAdapter)
SUPPORTED_MODEL_TYPES = tuple(t for a in ADAPTERS for t in a.model_types)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to score: never mutated after loading, so threads may share it."""

    name: str
    model_type: str
    model: Any
    processor: Any
    adapter: FamilyAdapter
    yes_ids: tuple[int, ...]
    no_ids: tuple[int, ...]
    device: torch.device
    dtype: torch.dtype
    frame_side: int  # resize frames so their longer side is at most this before processing
    eos_ids: tuple[int, ...] = field(default=())
    # Suffixes with reference images, built once per process (the cache locks itself).
    suffixes: SuffixCache = field(default_factory=SuffixCache, compare=False)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def image_token_id(self) -> int:
        return int(self.model.config.image_token_id)


def _adapter_for(model_type: str) -> type[FamilyAdapter]:
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    raise UnsupportedModel(
        f"model type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
    )


def _read_config(model: str) -> Any:
    from transformers import AutoConfig

    local = local_files_only(model)
    try:
        return AutoConfig.from_pretrained(model, local_files_only=local)
    except ValueError as exc:
        if "Unrecognized model" in str(exc):
            raise UnsupportedModel(f"{model}: {exc}") from exc
        raise unavailable(model, "model configuration", exc, local_only=local) from exc
    except Exception as exc:  # OSError, and huggingface_hub errors (validation, HTTP) that are not
        raise unavailable(model, "model configuration", exc, local_only=local) from exc


def _single_token_ids(tokenizer: Any, variants: tuple[str, ...]) -> tuple[int, ...]:
    ids: list[int] = []
    for text in variants:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) == 1 and encoded[0] not in ids:
            ids.append(int(encoded[0]))
    return tuple(ids)


def _load_weights(
    model: str, *, device: torch.device, dtype: torch.dtype, attn: str | None
) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn is not None:
        kwargs["attn_implementation"] = attn
    kwargs["local_files_only"] = local = local_files_only(model)
    try:
        processor = AutoProcessor.from_pretrained(model, local_files_only=local)
        net = AutoModelForImageTextToText.from_pretrained(model, **kwargs)
    except torch.cuda.OutOfMemoryError as exc:
        raise OutOfMemory(f"{model}: out of device memory while loading") from exc
    except (OSError, ValueError, ImportError) as exc:
        raise unavailable(model, "weights or processor", exc, local_only=local) from exc
    try:
        net = net.to(device)
    except torch.cuda.OutOfMemoryError as exc:
        raise OutOfMemory(f"{model}: out of device memory moving the model to {device}") from exc
    return net.eval(), processor


def load_model(
    model: str,
    *,
    device: str = "auto",
    dtype: str = "auto",
    attn_implementation: str | None = None,
    precision: str = "float",
) -> LoadedModel:
    """Load ``model`` (a directory or a cached hub id) for scoring, its weights at ``precision``
    (workers.model.precision); refuse other families first."""
    config = _read_config(model)
    _adapter_for(config.model_type)  # refuse an unsupported family before any weight is read
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    weights = resolve_precision(precision, dev, torch_dtype)
    net, processor = _load_weights(model, device=dev, dtype=torch_dtype, attn=attn_implementation)
    net = apply_precision(net, weights)
    loaded = ready_model(model, net, processor, device=dev, dtype=torch_dtype)
    log.info(
        "loaded %s (%s) on %s as %s (%s); frame side %d",
        model,
        config.model_type,
        dev,
        torch_dtype,
        weights,
        loaded.frame_side,
    )
    return loaded


def ready_model(name: str, net: Any, processor: Any, *, device: Any, dtype: Any) -> LoadedModel:
    """A model already in memory (loaded, or built with random weights by the benches) ready to score:
    its family's adapter, its single-token yes/no answers and its end-of-text ids."""
    adapter = _adapter_for(net.config.model_type)(processor, net.config)
    yes_ids = _single_token_ids(processor.tokenizer, YES_VARIANTS)
    no_ids = _single_token_ids(processor.tokenizer, NO_VARIANTS)
    if not yes_ids or not no_ids:
        raise UnsupportedModel(f"{name}: the tokenizer has no single-token Yes/No answer")
    eos = net.generation_config.eos_token_id if net.generation_config is not None else None
    eos_ids = tuple(eos) if isinstance(eos, list) else ((eos,) if eos is not None else ())
    if processor.tokenizer.eos_token_id is not None and processor.tokenizer.eos_token_id not in eos_ids:
        eos_ids = eos_ids + (processor.tokenizer.eos_token_id,)
    return LoadedModel(
        name=name,
        model_type=net.config.model_type,
        model=net,
        processor=processor,
        adapter=adapter,
        yes_ids=yes_ids,
        no_ids=no_ids,
        device=torch.device(device),
        dtype=dtype,
        frame_side=adapter.frame_side(),  # type: ignore[attr-defined]
        eos_ids=eos_ids,
    )


def check_model_supported(model: str) -> str:
    """Read only the configuration and refuse an unsupported family: a clear error at worker start."""
    config = _read_config(model)
    _adapter_for(config.model_type)
    return str(config.model_type)


def load_configured_model(conf: ModelSettings) -> LoadedModel:
    """The model named by the `model` settings section, loaded quietly (no hub progress bars)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    log.info("loading model %s on %s (%s)", conf.id, conf.device, conf.dtype)
    return load_model(
        conf.id,
        device=conf.device,
        dtype=conf.dtype,
        attn_implementation=conf.attn_implementation,
        precision=conf.precision,
    )


def on_device(loaded: LoadedModel, inputs: dict[str, Any]) -> dict[str, Any]:
    """Processor outputs on the model's device, floating point ones in its dtype."""
    out: dict[str, Any] = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(loaded.device)
            if value.is_floating_point():
                value = value.to(loaded.dtype)
        out[key] = value
    return out
