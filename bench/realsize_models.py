"""SmolVLM2 at its published sizes, with random weights, as a LoadedModel (for bench/realsize.py).

The dimensions are those of the checkpoints' config.json (HuggingFaceTB/SmolVLM2-256M-Video-Instruct,
-500M-Video-Instruct, -2.2B-Instruct), written out here because nothing can be downloaded where this runs:

- 256M: SigLIP-B/16 at 512 px (hidden 768, 12 layers, 12 heads, MLP 3072) and SmolLM2-135M (hidden 576,
  30 layers, 9 heads, 3 KV heads, MLP 1536); pixel shuffle 4 -> 64 tokens a frame.
- 500M: the same vision tower and SmolLM2-360M (hidden 960, 32 layers, 15 heads, 5 KV heads, MLP 2560);
  64 tokens a frame.
- 2.2B: SigLIP-so400m/14 at 384 px (hidden 1152, 27 layers, 16 heads, MLP 4304) and SmolLM2-1.7B (hidden
  2048, 24 layers, 32 heads, 32 KV heads, MLP 8192); pixel shuffle 3 -> 81 tokens a frame.

All three: vocabulary 49,280, an output head of its own (not tied to the embeddings: the published
parameter counts, 256.5 M, 507.5 M and 2.25 B, include it). The processor is the family's real
processor class with the checkpoints' frame sizes and a small tokenizer holding the special tokens (random
weights make the vocabulary irrelevant; the model keeps its real vocabulary size). ``tiny`` is a toy of the
same family for the bench's smoke run.
"""

from __future__ import annotations

from typing import Any

# name: (vision: hidden, mlp, layers, heads, image px, patch), (text: hidden, mlp, layers, heads, kv heads),
#       scale factor
SIZES: dict[str, tuple[tuple[int, ...], tuple[int, ...], int]] = {
    "tiny": ((32, 64, 2, 2, 112, 14), (64, 128, 2, 4, 2), 2),
    "256m": ((768, 3072, 12, 12, 512, 16), (576, 1536, 30, 9, 3), 4),
    "500m": ((768, 3072, 12, 12, 512, 16), (960, 2560, 32, 15, 5), 4),
    "2.2b": ((1152, 4304, 27, 16, 384, 14), (2048, 8192, 24, 32, 32), 3),
}
VOCAB = 49280


def processor_for(size: str) -> Any:
    from transformers import SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    from workers.testing import models as tiny

    vision, _, scale = SIZES[size]
    side, patch = vision[4], vision[5]
    special = ["<|endoftext|>", "<|im_start|>", "<end_of_utterance>", "<fake_token_around_image>"]
    special += ["<global-img>", "<image>", "<video>"]
    named = {
        "image_token": "<image>",
        "video_token": "<video>",
        "fake_image_token": "<fake_token_around_image>",
        "global_image_token": "<global-img>",
        "end_of_utterance_token": "<end_of_utterance>",
    }
    tok = tiny._tokenizer(special, named)
    tok.bos_token, tok.eos_token, tok.pad_token = "<|im_start|>", "<end_of_utterance>", "<|endoftext|>"
    frame = {"longest_edge": side}
    return SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(size={"longest_edge": 4 * side}, max_image_size=frame),
        video_processor=SmolVLMVideoProcessor(size=frame, max_image_size=frame, do_image_splitting=False),
        tokenizer=tok,
        image_seq_len=((side // patch) ** 2) // scale**2,
        chat_template=tiny.SMOLVLM2_TEMPLATE,
    )


def config_for(size: str, tok: Any) -> Any:
    from transformers import SmolVLMConfig

    (v_hidden, v_mlp, v_layers, v_heads, side, patch), text, scale = SIZES[size]
    hidden, mlp, layers, heads, kv = text
    ids = tok.convert_tokens_to_ids
    return SmolVLMConfig(
        vision_config=dict(
            hidden_size=v_hidden,
            intermediate_size=v_mlp,
            num_hidden_layers=v_layers,
            num_attention_heads=v_heads,
            image_size=side,
            patch_size=patch,
        ),
        text_config=dict(
            model_type="llama",
            hidden_size=hidden,
            intermediate_size=mlp,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            vocab_size=VOCAB,
            max_position_embeddings=8192,
            rms_norm_eps=1e-5,
            bos_token_id=ids("<|im_start|>"),
            eos_token_id=ids("<end_of_utterance>"),
            pad_token_id=ids("<|endoftext|>"),
            tie_word_embeddings=False,
        ),
        image_token_id=ids("<image>"),
        scale_factor=scale,
        pad_token_id=ids("<|endoftext|>"),
        tie_word_embeddings=False,
    )


def loaded(size: str, *, device: str = "cpu", precision: str = "float") -> Any:
    """The model with random weights on ``device`` (fp32 on a CPU, bf16 on a GPU; ``precision`` int8
    quantizes its Linear layers as the worker does), as a LoadedModel."""
    import torch
    from transformers import SmolVLMForConditionalGeneration

    from workers.model.loading import ready_model
    from workers.model.precision import apply_precision

    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {', '.join(SIZES)}")
    processor = processor_for(size)
    config = config_for(size, processor.tokenizer)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = SmolVLMForConditionalGeneration._from_config(config, dtype=dtype).eval()
    if device != "meta":
        model = apply_precision(model, precision)
    return ready_model(f"random-smolvlm2-{size}", model, processor, device=device, dtype=dtype)
