"""Tiny, randomly initialised models of the real architectures, for tests and benchmarks.

Each builder writes a directory that ``AutoModelForImageTextToText.from_pretrained`` and
``AutoProcessor.from_pretrained`` load exactly like a real checkpoint: the real model and processor
classes, the family's real chat template, its special tokens as single tokens of a byte-level BPE
tokenizer trained here on a small corpus. Weights are random, so P(yes) is about 0.5: use these
models to test plumbing and consistency, never values.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

FAMILIES = ("llava_next_video", "qwen2_5_vl", "qwen2_vl", "smolvlm2")

# The families' real chat templates (from the published checkpoints / transformers).
LLAVA_NEXT_VIDEO_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}"
    "{% endfor %}{# Render all video then #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}"
    "{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
QWEN_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SMOLVLM2_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% elif line['type'] == 'video' %}{{ '<video>' }}"
    "{% endif %}{% endfor %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

_CORPUS = [
    "Yes. No. yes no YES NO Yes, no. Yes it does. No it does not.",
    "Does this video show a person walking a dog? Answer yes or no.",
    "Describe briefly where and how a red car appears in the video.",
    "USER: ASSISTANT: User: Assistant: system user assistant You are a helpful assistant.",
    "You are provided the following series of frames from a video. Frame from 00:01:",
    "the a an of in on at to is are was with and or person people car truck dog cat bird package door",
    "smoke fire delivery man woman child bicycle yard street gate window night day rain snow light",
    "which clip shows what happens where how many who left right top bottom near far one two three",
    "0 1 2 3 4 5 6 7 8 9 10 eight sixteen thirty-two seconds minutes frames video image picture",
]


def _tokenizer(special: list[str], named: dict[str, str], *, vocab_size: int = 600):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, extra_special_tokens=named)
    return fast


def _save(out_dir: Path, model, processor) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    processor.tokenizer.save_pretrained(out_dir)
    return out_dir


def _llava_next_video(out_dir: Path, image_size: int) -> Path:
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextImageProcessor,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
        LlavaNextVideoProcessor,
        LlavaNextVideoVideoProcessor,
    )

    special = ["<unk>", "<s>", "</s>", "<image>", "<video>", "<pad>"]
    tok = _tokenizer(special, {"image_token": "<image>", "video_token": "<video>"})
    tok.unk_token, tok.bos_token, tok.eos_token, tok.pad_token = "<unk>", "<s>", "</s>", "<pad>"
    ids = tok.convert_tokens_to_ids
    config = LlavaNextVideoConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=image_size, patch_size=14, projection_dim=32,
        ),
        text_config=LlamaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=4096,
            bos_token_id=ids("<s>"), eos_token_id=ids("</s>"), pad_token_id=ids("<pad>"),
        ),
        image_token_index=ids("<image>"),
        video_token_index=ids("<video>"),
        image_grid_pinpoints=[
            [image_size, image_size], [image_size, 2 * image_size], [2 * image_size, image_size]
        ],
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(image_size // 14) ** 2,
        video_seq_length=(image_size // 28) ** 2,
        spatial_pool_stride=2,
    )
    model = LlavaNextVideoForConditionalGeneration(config).eval()
    crop = {"height": image_size, "width": image_size}
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": image_size}, crop_size=crop,
        image_grid_pinpoints=config.image_grid_pinpoints,
    )
    video_processor = LlavaNextVideoVideoProcessor(size={"shortest_edge": image_size}, crop_size=crop)
    processor = LlavaNextVideoProcessor(
        video_processor=video_processor, image_processor=image_processor, tokenizer=tok,
        chat_template=LLAVA_NEXT_VIDEO_TEMPLATE, patch_size=14,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
    )
    return _save(out_dir, model, processor)


def _qwen_text(tok, head_dim: int = 16) -> dict:
    ids = tok.convert_tokens_to_ids
    return dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        bos_token_id=None, eos_token_id=ids("<|im_end|>"), pad_token_id=ids("<|endoftext|>"),
    )


_QWEN_SPECIAL = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
]


def _qwen_processor(cls, tok, image_size: int):
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    # Frames are resized to about image_size x image_size (a multiple of 28).
    side = max(28, (image_size // 28) * 28)
    pixels = {"min_pixels": 28 * 28 * 4, "max_pixels": side * side}
    image_processor = Qwen2VLImageProcessor(**pixels)
    video_processor = Qwen2VLVideoProcessor(**pixels, cap_pixels_per_frame=False)
    return cls(
        image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
        chat_template=QWEN_VL_TEMPLATE,
    )


def _qwen_tokenizer():
    tok = _tokenizer(_QWEN_SPECIAL, {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})
    tok.eos_token, tok.pad_token = "<|im_end|>", "<|endoftext|>"
    return tok


def _qwen2_5_vl(out_dir: Path, image_size: int) -> Path:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    tok = _qwen_tokenizer()
    ids = tok.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1],
            tokens_per_second=2,
        ),
        text_config=_qwen_text(tok),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    return _save(out_dir, model, _qwen_processor(Qwen2_5_VLProcessor, tok, image_size))


def _qwen2_vl(out_dir: Path, image_size: int) -> Path:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    tok = _qwen_tokenizer()
    ids = tok.convert_tokens_to_ids
    config = Qwen2VLConfig(
        vision_config=dict(
            depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2,
        ),
        text_config=_qwen_text(tok),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    model = Qwen2VLForConditionalGeneration(config).eval()
    return _save(out_dir, model, _qwen_processor(Qwen2VLProcessor, tok, image_size))


def _smolvlm2(out_dir: Path, image_size: int) -> Path:
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    special = [
        "<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>",
        "<global-img>", "<image>", "<video>",
    ]
    named = {
        "image_token": "<image>", "video_token": "<video>", "fake_image_token": "<fake_token_around_image>",
        "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>",
    }
    tok = _tokenizer(special, named)
    tok.bos_token, tok.eos_token, tok.pad_token = "<|im_start|>", "<end_of_utterance>", "<|endoftext|>"
    ids = tok.convert_tokens_to_ids
    patch = 14
    side = max(patch * 2, (image_size // (patch * 2)) * patch * 2)
    config = SmolVLMConfig(
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=side, patch_size=patch,
        ),
        text_config=dict(
            model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tok), max_position_embeddings=4096,
            bos_token_id=ids("<|im_start|>"), eos_token_id=ids("<end_of_utterance>"),
            pad_token_id=ids("<|endoftext|>"),
        ),
        image_token_id=ids("<image>"),
        scale_factor=2,
        pad_token_id=ids("<|endoftext|>"),
    )
    model = SmolVLMForConditionalGeneration(config).eval()
    size = {"longest_edge": side}
    image_processor = SmolVLMImageProcessor(
        size=size, max_image_size=size, do_image_splitting=False,
    )
    video_processor = SmolVLMVideoProcessor(size=size, max_image_size=size, do_image_splitting=False)
    processor = SmolVLMProcessor(
        image_processor=image_processor, tokenizer=tok, video_processor=video_processor,
        image_seq_len=((side // patch) ** 2) // 4, chat_template=SMOLVLM2_TEMPLATE,
    )
    return _save(out_dir, model, processor)


_BUILDERS: dict[str, Callable[[Path, int], Path]] = {
    "llava_next_video": _llava_next_video,
    "qwen2_5_vl": _qwen2_5_vl,
    "qwen2_vl": _qwen2_vl,
    "smolvlm2": _smolvlm2,
}


def build_tiny_model(family: str, out_dir: Path | str, *, image_size: int = 112, seed: int = 0) -> Path:
    """Write a tiny random model of ``family`` to ``out_dir`` and return the directory."""
    import torch

    if family not in _BUILDERS:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    torch.manual_seed(seed)
    path = _BUILDERS[family](Path(out_dir), image_size)
    log.debug("built tiny %s model in %s (image_size %d)", family, path, image_size)
    return path


def cached_tiny_model(family: str, cache_dir: Path | str, *, image_size: int = 112, seed: int = 0) -> Path:
    """Build once per (family, image_size, seed) under ``cache_dir``; later calls reuse the directory."""
    target = Path(cache_dir) / f"{family}-{image_size}-{seed}"
    if (target / "config.json").exists():
        return target
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=cache_dir))
    try:
        build_tiny_model(family, tmp, image_size=image_size, seed=seed)
        try:
            tmp.rename(target)
        except OSError:  # another process built it first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
