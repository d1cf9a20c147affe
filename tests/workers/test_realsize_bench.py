"""bench/realsize.py: its SmolVLM2 models have the published sizes (built on the meta device: no memory) and
token counts, and its smoke run (``--quick``, what ``make test`` runs) measures every phase and ends with
one JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support.bench_modules import bench_module
from workers.decode.frames import fit_size

BENCH = Path(__file__).resolve().parents[2] / "bench"

# published parameter counts in millions (low, high), vision tokens a frame, longest frame side
EXPECTED = {"256m": (255, 258, 64, 512), "500m": (505, 510, 64, 512), "2.2b": (2240, 2260, 81, 384)}


@pytest.fixture(scope="module")
def sizes():
    return bench_module("realsize_models")


@pytest.mark.parametrize("size", sorted(EXPECTED))
def test_the_models_have_the_published_sizes_and_token_counts(sizes, size: str) -> None:
    low, high, per_frame, side = EXPECTED[size]
    loaded = sizes.loaded(size, device="meta")
    millions = sum(p.numel() for p in loaded.model.parameters()) / 1e6
    assert low < millions < high
    assert loaded.frame_side == side
    w, h = fit_size((1280, 720), loaded.frame_side)  # as the decode pass delivers a 720p camera's frames
    head, _ = loaded.adapter.question_parts("Is there a dog?")
    inputs = loaded.adapter.full_inputs(head, np.zeros((8, h, w, 3), np.uint8), 0.8, [])
    assert int((inputs["input_ids"] == loaded.image_token_id).sum()) == 8 * per_frame


def test_the_smoke_run_measures_every_phase_and_ends_with_one_json_line() -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(BENCH / "realsize.py"), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    row, int8 = json.loads(done.stdout.strip().splitlines()[-1])["rows"]
    assert row["model"] == "tiny" and row["precision"] == "fp32" and row["device"] == "cpu"
    assert int8["precision"] == "int8" and 0 < int8["p_yes_int8_vs_fp32"] < 0.01
    assert int8["gflops_fp32_equiv"]["vision"] > 0 and len(int8["p_yes"]) == len(row["p_yes"]) == 8
    phases = ["decode", "vision", "prefill", "suffix1", "suffix8", "evidence1", "evidence8", "best1", "best8"]
    assert all(row["ms"][p] > 0 for p in phases)
    assert row["gflop"]["score8.vision"] > 0 and row["gflop"]["score8"] > row["gflop"]["score8.vision"]
    assert "best8.vision" not in row["gflop"]  # the best frame reuses the window's frame features
    assert row["gflop"]["best8_reencode.vision"] == row["gflop"]["score8.vision"]  # the same frames again
    assert row["gemm_gflops"] > 0 and row["peak_rss_mib"] > 0
    assert 0 < row["footage_per_s"]["matched_8"] < row["footage_per_s"]["unmatched_8"]
