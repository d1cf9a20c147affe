"""Windows scored as one batch of prefixes give the scores of scoring them one by one, on every family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vigil.config.settings import ModelSettings
from vigil.formats.probe import probe
from vigil.ops.contracts import TargetSpec
from workers.model.prompts import question_for
from workers.model.scoring import score_targets
from workers.model.window_batches import _encode, _groups, _tails, prefix_tokens, score_windows
from workers.testing.clips import write_clip_h264

DESCRIPTIONS = ["a person walking", "a red car", "a dog on a lead"]


def windows(rates: list[float]) -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(1)
    return [(rng.integers(0, 255, (8, 112, 112, 3), dtype=np.uint8), fps) for fps in rates]


def group_sizes(loaded, batch: list[tuple[np.ndarray, float]], budget: int) -> list[int]:
    head, _ = _tails(loaded, [(question_for(d, 0), 0) for d in DESCRIPTIONS])
    return [len(g) for g in _groups([_encode(loaded, rgb, fps, head) for rgb, fps in batch], budget)]


def test_batched_windows_equal_one_by_one(loaded_models, family: str) -> None:
    loaded = loaded_models(family)
    batch = windows([0.8, 0.8, 0.8, 0.5])  # the last one sampled at another rate, like a merged last window
    one_by_one = np.array(
        [score_targets(loaded, rgb, fps=fps, descriptions=DESCRIPTIONS) for rgb, fps in batch]
    )
    batched = np.array(score_windows(loaded, batch, descriptions=DESCRIPTIONS, token_budget=10**6))
    assert batched.shape == (4, 3)
    assert np.abs(batched - one_by_one).max() <= 1e-4
    assert np.ptp(one_by_one[:, 0]) > 0  # the windows really differ: the comparison can fail
    assert max(group_sizes(loaded, batch, 10**6)) >= 3  # and they really were batched


def test_the_token_budget_splits_the_batch(loaded_models) -> None:
    loaded = loaded_models("llava_next_video")
    batch = windows([0.8] * 4)
    tokens = prefix_tokens(loaded, *batch[0])
    assert group_sizes(loaded, batch, 2 * tokens) == [2, 2]
    assert group_sizes(loaded, batch, tokens) == [1, 1, 1, 1]
    one_by_one = [score_targets(loaded, rgb, fps=fps, descriptions=DESCRIPTIONS) for rgb, fps in batch]
    split = score_windows(loaded, batch, descriptions=DESCRIPTIONS, token_budget=2 * tokens)
    assert np.abs(np.array(split) - np.array(one_by_one)).max() <= 1e-4


def test_many_targets_fall_back_to_cropping_back_the_shared_cache(loaded_models, monkeypatch) -> None:
    import workers.model.window_batches as wb

    loaded = loaded_models("qwen2_5_vl")
    batch = windows([0.8] * 3)
    expected = [score_targets(loaded, rgb, fps=fps, descriptions=DESCRIPTIONS) for rgb, fps in batch]
    monkeypatch.setattr(wb, "BATCH_TOKEN_BUDGET", 1)  # too small for repeating the cache per target
    cropped = score_windows(loaded, batch, descriptions=DESCRIPTIONS, token_budget=10**6)
    assert np.abs(np.array(cropped) - np.array(expected)).max() <= 1e-4


@pytest.mark.parametrize("person_threshold", [1.0, 0.5])
def test_the_recogniser_batches_windows_with_the_same_results(
    loaded_models, tmp_path: Path, person_threshold: float
) -> None:
    from workers.analysis.pipeline import WindowRecognizer

    clip = write_clip_h264(tmp_path / "c.mp4", seconds=6, fps=10, size=(160, 96), gop=20)
    # at 0.5 "person" matches (P(yes) ~0.56 on the tiny model): those windows are scored again alone, for
    # their evidence and thumbnail; at 1.0 nothing matches and every score comes from the batch
    targets = [
        TargetSpec(1, "person", "a person walking", person_threshold),
        TargetSpec(2, "van", "a van", 1.0),
    ]

    def run(budget: int):
        settings = ModelSettings(
            frames_per_window=4, window_s=1.0, evidence_max_tokens=4, window_batch_tokens=budget
        )
        loaded = loaded_models("llava_next_video")
        recognizer = WindowRecognizer(loaded, settings, thumbnails_dir=tmp_path / str(budget))
        return recognizer.recognize(clip, probe(clip), targets, media_id=budget)

    alone, batched = run(0), run(10**6)
    assert batched.windows == 6
    keys = [(r.target_id, r.window_index) for r in alone.results]
    assert [(r.target_id, r.window_index) for r in batched.results] == keys
    assert max(abs(a.p_yes - b.p_yes) for a, b in zip(alone.results, batched.results, strict=True)) <= 1e-4
    assert [(r.matched, r.evidence) for r in batched.results] == [
        (r.matched, r.evidence) for r in alone.results
    ]
    thumbs = [[Path(r.thumbnail_path).name for r in x.results if r.thumbnail_path] for x in (alone, batched)]
    assert thumbs[0] == thumbs[1]
    assert any(r.matched for r in alone.results) == (person_threshold < 1.0)
