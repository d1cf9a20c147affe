"""bench/gpu.py, checked where no GPU is: it refuses in one line, and its real-size models have the published
shapes (built on the meta device: no memory) and its processors the real token counts for 32 frames."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from workers.decode.frames import fit_size
from workers.model.loading import ADAPTERS

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu.py"


@pytest.fixture(scope="module")
def gpu() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the bench would run")
def test_without_cuda_it_refuses_in_one_line() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(BENCH)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines == ["bench/gpu.py needs a CUDA GPU and none is available here; run it on a GPU machine"]


# (parameters in billions, low and high; vision tokens of one 32-frame window of a 1280x720 source)
EXPECTED = {
    "llava_next_video": (7.0, 7.1, 4608),  # 32 frames x 12 x 12 pooled patches of 336 px
    "qwen2_5_vl": (
        8.2,
        8.4,
        11520,
    ),  # "7B": 8.29 B with its vision tower; 16 frame pairs x 720 merged patches
}


@pytest.mark.parametrize("family", sorted(EXPECTED))
def test_the_real_size_models_and_their_token_counts(gpu: ModuleType, family: str) -> None:
    low, high, tokens = EXPECTED[family]
    processor = gpu.processor_for(family)
    config = gpu.config_for(family, processor)
    with torch.device("meta"):
        model = gpu.model_class(family)(config)
    billions = sum(p.numel() for p in model.parameters()) / 1e9
    assert low < billions < high
    adapter = next(a for a in ADAPTERS if config.model_type in a.model_types)(processor, config)
    frame = fit_size(gpu.CLIP_SIZE, adapter.frame_side())  # as the decode pass delivers them
    assert gpu.video_tokens(processor, gpu.FRAMES, frame) == tokens
    assert gpu.FRAMES == 32 and gpu.TARGET_COUNT == 8


def test_the_bench_assembles_a_loaded_model_the_recogniser_can_use(gpu: ModuleType) -> None:
    loaded = gpu._loaded("qwen2_5_vl", device="meta")
    assert loaded.dtype == torch.bfloat16 and loaded.yes_ids and loaded.no_ids and loaded.eos_ids
    assert (
        loaded.frame_side == 1097
    )  # sqrt(2 x 602,112): frames are decoded no larger than the processor keeps
    assert loaded.image_token_id == loaded.tokenizer.convert_tokens_to_ids("<|image_pad|>")
