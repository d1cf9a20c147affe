"""Real-size models on one GPU: clips/s, model ms per window, decode ms, GPU busy share and peak memory.

LLaVA-NeXT-Video-7B and Qwen2.5-VL-7B built from their published configurations (written out below: this
runs where nothing can be downloaded) with random weights in bf16, fed by the real decode path
(``WindowRecognizer.recognize``) on synthetic 1280x720 H.264 clips: 32 frames a window, 8 targets with
thresholds of 1 (scores only, no evidence). Each model runs three ways on the same clips: decoding in line
(``prefetch_windows`` 0, the old flow), decoding ahead (2), and ahead with windows batched
(``window_batch_tokens`` = four windows' prefixes). The processors are the families' real processor classes
with the checkpoints' sizes and a small tokenizer holding their special tokens (random weights make the
vocabulary irrelevant; the model keeps its real vocabulary size).

GPU busy share: CUDA events recorded on entering and leaving every forward of the model (the prefix and the
suffix passes), summed, ÷ the wall time of the run. It counts launch gaps inside a forward as busy, so it is
an upper bound; the time between forwards (decoding, processor, Python) is idle time.

On a machine without CUDA it refuses in one line and exits 2. Goal: under 5 minutes on one H100/H200.

``--quick`` is a smoke run, on the GPU where there is one and on the CPU otherwise: the families' tiny random
models (``workers.testing.models``) instead of the real sizes, one 4 s clip at 320x180, windows of 4 frames
(busy share from the wall clock of each forward on the CPU, peak memory the process's RSS there). It proves
the script runs, it measures nothing.

    PYTHONPATH=. python bench/gpu.py [--clips 3] [--families llava_next_video,qwen2_5_vl] [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

FRAMES = 32
WINDOW_S = 8.0
CLIP_SECONDS = 32
CLIP_SIZE = (1280, 720)
TARGET_COUNT = 8
FAMILIES = ("llava_next_video", "qwen2_5_vl")


class Shape(NamedTuple):  # not a dataclass: the tests load this file as a module outside sys.modules
    """What one run feeds the models: clip length and size, frames and seconds a window."""

    clip_seconds: int
    clip_size: tuple[int, int]
    frames: int
    window_s: float


FULL = Shape(CLIP_SECONDS, CLIP_SIZE, FRAMES, WINDOW_S)
QUICK = Shape(4, (320, 180), 4, 2.0)


def llava_next_video_7b(tok: Any) -> Any:
    """llava-hf/LLaVA-NeXT-Video-7B-hf's config.json, special token ids from ``tok``."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextVideoConfig

    ids = tok.convert_tokens_to_ids
    return LlavaNextVideoConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=336,
            patch_size=14,
            projection_dim=768,
            hidden_act="quick_gelu",
        ),
        text_config=LlamaConfig(
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            vocab_size=32064,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
            bos_token_id=ids("<s>"),
            eos_token_id=ids("</s>"),
            pad_token_id=ids("<pad>"),
            tie_word_embeddings=False,
        ),
        image_token_index=ids("<image>"),
        video_token_index=ids("<video>"),
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_grid_pinpoints=[[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
        image_seq_length=576,
        video_seq_length=288,
        spatial_pool_mode="average",
        spatial_pool_stride=2,
        tie_word_embeddings=False,
    )


def qwen2_5_vl_7b(tok: Any) -> Any:
    """Qwen/Qwen2.5-VL-7B-Instruct's config.json, special token ids from ``tok``."""
    from transformers import Qwen2_5_VLConfig

    ids = tok.convert_tokens_to_ids
    return Qwen2_5_VLConfig(
        vision_config=dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            out_hidden_size=3584,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=112,
            fullatt_block_indexes=[7, 15, 23, 31],
            tokens_per_second=2,
            hidden_act="silu",
        ),
        text_config=dict(
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            vocab_size=152064,
            max_position_embeddings=128000,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
            bos_token_id=None,
            eos_token_id=ids("<|im_end|>"),
            pad_token_id=ids("<|endoftext|>"),
            tie_word_embeddings=False,
        ),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def processor_for(family: str) -> Any:
    """The family's processor with the checkpoint's sizes (LLaVA: 336 px frames, 144 tokens each after
    pooling; Qwen2.5-VL: at most 602,112 pixels a video frame)."""
    from transformers import (
        LlavaNextImageProcessor,
        LlavaNextVideoProcessor,
        LlavaNextVideoVideoProcessor,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    from workers.testing import models as tiny

    if family == "llava_next_video":
        tok = tiny._tokenizer(
            ["<unk>", "<s>", "</s>", "<image>", "<video>", "<pad>"],
            {"image_token": "<image>", "video_token": "<video>"},
        )
        tok.unk_token, tok.bos_token, tok.eos_token, tok.pad_token = "<unk>", "<s>", "</s>", "<pad>"
        crop = {"height": 336, "width": 336}
        pinpoints = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
        return LlavaNextVideoProcessor(
            video_processor=LlavaNextVideoVideoProcessor(size={"shortest_edge": 336}, crop_size=crop),
            image_processor=LlavaNextImageProcessor(
                size={"shortest_edge": 336}, crop_size=crop, image_grid_pinpoints=pinpoints
            ),
            tokenizer=tok,
            chat_template=tiny.LLAVA_NEXT_VIDEO_TEMPLATE,
            patch_size=14,
            vision_feature_select_strategy="default",
            num_additional_image_tokens=1,
        )
    if family == "qwen2_5_vl":
        # the checkpoint's image sizes; for video the processor's own default, qwen-vl-utils' per-frame cap
        # of 768 x 28 x 28 pixels (the checkpoint's 12.8 MP would give 19,136 tokens for 32 720p frames)
        return Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056),
            video_processor=Qwen2VLVideoProcessor(cap_pixels_per_frame=False),
            tokenizer=tiny._qwen_tokenizer(),
            chat_template=tiny.QWEN_VL_TEMPLATE,
        )
    raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")


def model_class(family: str) -> Any:
    from transformers import LlavaNextVideoForConditionalGeneration, Qwen2_5_VLForConditionalGeneration

    return {
        "llava_next_video": LlavaNextVideoForConditionalGeneration,
        "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
    }[family]


def config_for(family: str, processor: Any) -> Any:
    build = {"llava_next_video": llava_next_video_7b, "qwen2_5_vl": qwen2_5_vl_7b}[family]
    return build(processor.tokenizer)


def video_tokens(processor: Any, frames: int, size: tuple[int, int]) -> int:
    """Vision tokens the processor puts in a prompt for ``frames`` frames of ``size`` (w, h)."""
    import numpy as np

    rgb = np.zeros((frames, size[1], size[0], 3), np.uint8)
    metadata = {"fps": 1.0, "total_num_frames": frames, "frames_indices": list(range(frames))}
    token = processor.video_token
    out = processor(
        text=[token], videos=[rgb], video_metadata=[metadata], do_sample_frames=False, return_tensors="pt"
    )
    return int((out["input_ids"] == processor.tokenizer.convert_tokens_to_ids(token)).sum())


def _loaded(family: str, device: str = "cuda") -> Any:
    """The model with random weights on ``device`` (the tests build it on ``meta``), as a LoadedModel."""
    import torch

    from workers.model.loading import ready_model

    processor = processor_for(family)
    config = config_for(family, processor)
    torch.manual_seed(0)
    with torch.device(device):
        model = model_class(family)._from_config(config, dtype=torch.bfloat16).eval()
    return ready_model(f"random-{family}-7b", model, processor, device=device, dtype=torch.bfloat16)


def _tiny_loaded(family: str, folder: Path) -> Any:
    """The family's tiny random model (``--quick``), on the GPU where there is one."""
    from workers.model.loading import load_model
    from workers.testing.models import cached_tiny_model

    return load_model(str(cached_tiny_model(family, folder / "models")))


class ForwardTimer:
    """Time inside every forward of the model and of its language model (suffix passes): CUDA events on a
    GPU, the wall clock on the CPU (where a forward is synchronous)."""

    def __init__(self, model: Any, *, cuda: bool = True) -> None:
        import torch

        self.pairs: list[tuple[Any, Any]] = []
        self._open: list[Any] = []
        self._depth = 0
        self._torch = torch
        self._cuda = cuda
        for module in (model, model.model):
            module.register_forward_pre_hook(self._enter)
            module.register_forward_hook(self._leave)

    def _mark(self) -> Any:
        if not self._cuda:
            return time.perf_counter()
        event = self._torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def _enter(self, *_: Any) -> None:
        self._depth += 1
        if self._depth == 1:  # the outer model's forward runs model.model inside it: count it once
            self._open.append(self._mark())

    def _leave(self, *_: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.pairs.append((self._open.pop(), self._mark()))

    def busy_ms(self) -> float:
        if self._cuda:
            self._torch.cuda.synchronize()
            total = sum(start.elapsed_time(end) for start, end in self.pairs)
        else:
            total = sum((end - start) * 1000 for start, end in self.pairs)
        self.pairs.clear()
        return float(total)


def _peak_gib(cuda: bool) -> float:
    import torch

    if cuda:
        return float(torch.cuda.max_memory_allocated() / 2**30)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _run(family: str, clips: list[Path], folder: Path, shape: Shape = FULL) -> list[dict[str, Any]]:
    import torch

    from vigil.config.settings import ModelSettings
    from vigil.formats.probe import probe
    from vigil.ops.contracts import TargetSpec
    from workers.analysis.pipeline import WindowRecognizer
    from workers.decode.frames import fit_size

    loaded = _tiny_loaded(family, folder) if shape is QUICK else _loaded(family)
    cuda = loaded.device.type == "cuda"
    timer = ForwardTimer(loaded.model, cuda=cuda)
    targets = [TargetSpec(i + 1, f"t{i}", f"a person with a {c} bag", 1.0) for i, c in enumerate("abcdefgh")]
    targets = targets[:TARGET_COUNT]
    rows = []
    frame_size = fit_size(shape.clip_size, loaded.frame_side)
    window_tokens = video_tokens(loaded.processor, shape.frames, frame_size) + 128
    for name, depth, budget in (("in line", 0, 0), ("ahead", 2, 0), ("ahead+batch", 4, 4 * window_tokens)):
        settings = ModelSettings(
            frames_per_window=shape.frames,
            window_s=shape.window_s,
            evidence=False,
            prefetch_windows=depth,
            window_batch_tokens=budget,
        )
        worker = WindowRecognizer(loaded, settings, thumbnails_dir=folder / "thumbs")
        worker.recognize(clips[0], probe(clips[0]), targets, media_id=0)  # warm-up
        timer.busy_ms()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        began = time.perf_counter()
        outs = [worker.recognize(c, probe(c), targets, media_id=i) for i, c in enumerate(clips)]
        wall_ms = (time.perf_counter() - began) * 1000
        windows = sum(o.windows for o in outs)
        rows.append(
            {
                "family": family,
                "run": name,
                "clips_s": round(len(clips) / (wall_ms / 1000), 3),
                "model_ms_window": round(sum(o.model_ms for o in outs) / windows, 1),
                "decode_wait_ms_clip": round(sum(o.decode_ms for o in outs) / len(clips), 1),
                "decode_busy_ms_clip": round(
                    sum(float(o.params["decode_busy_ms"]) for o in outs) / len(clips), 1
                ),  # type: ignore[arg-type]
                "gpu_busy_share": round(timer.busy_ms() / wall_ms, 3),
                "peak_gib": round(_peak_gib(cuda), 2),
            }
        )
        print(_line(rows[-1]), flush=True)
    del loaded, timer
    if cuda:
        torch.cuda.empty_cache()
    return rows


COLUMNS = [  # (key, title, width, format)
    ("family", "family", 18, "s"),
    ("run", "run", 12, "s"),
    ("clips_s", "clips/s", 8, ".3f"),
    ("model_ms_window", "model ms/win", 12, ".1f"),
    ("decode_wait_ms_clip", "decode wait", 11, ".1f"),
    ("decode_busy_ms_clip", "decode busy", 11, ".1f"),
    ("gpu_busy_share", "GPU busy", 8, ".3f"),
    ("peak_gib", "peak GiB", 8, ".2f"),
]
HEADER = " ".join(f"{title:>{width}s}" for _, title, width, _ in COLUMNS)


def _line(row: dict[str, Any]) -> str:
    return " ".join(f"{row[key]:>{width}{fmt}}" for key, _, width, fmt in COLUMNS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: tiny models, GPU or CPU (no figures)"
    )
    args = parser.parse_args()
    import torch

    shape = QUICK if args.quick else FULL
    if args.quick:
        args.clips = 1
    elif not torch.cuda.is_available():
        print(
            "bench/gpu.py needs a CUDA GPU and none is available here; run it on a GPU machine",
            file=sys.stderr,
        )
        return 2
    from workers.testing.clips import write_clip_h264

    began = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vigil-gpu-") as tmp:
        folder = Path(tmp)
        clips = [
            write_clip_h264(
                folder / f"c{i}.mp4", seconds=shape.clip_seconds, fps=30, size=shape.clip_size, gop=250
            )
            for i in range(args.clips)
        ]
        w, h = shape.clip_size
        device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
        print(f"{device}; {len(clips)} clips of {shape.clip_seconds} s {w}x{h}")
        print(HEADER)
        for family in args.families.split(","):
            rows.extend(_run(family, clips, folder, shape))
    summary = {
        f"{r['family']}/{r['run']}/{k}": v for r in rows for k, v in r.items() if k not in ("family", "run")
    }
    summary["total_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps({"bench": "gpu", "quick": args.quick} | summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
