"""The best frame of a matched window, from one batched pass over its frames as one-frame videos, is the
frame the old method picked: every frame scored as its own video, one at a time (kept here as the
reference), on the generated test clips decoded as the pipeline decodes them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from vigil.formats.probe import probe
from workers.decode.frames import FrameRequest, open_media, plan_windows
from workers.model.best_frame import ONE_FRAME_FPS, best_frames
from workers.model.scoring import score_targets, score_window
from workers.model.suffixes import ReferenceImage
from workers.testing.clips import write_camera_clip, write_clip_mp4v

DESCRIPTIONS = ["a dog", "my car", "smoke", "a person walking by the gate"]
REUSING = ("llava_next_video", "smolvlm2")  # the families whose frames are encoded alone


def one_frame_at_a_time(loaded, rgb, descriptions, references) -> list[int]:
    """The method the batched pass replaced: a vision pass and a prefill per frame."""
    per_frame = np.array(
        [
            score_targets(
                loaded, rgb[i : i + 1], fps=ONE_FRAME_FPS, descriptions=descriptions, references=references
            )
            for i in range(len(rgb))
        ]
    )
    return [int(i) for i in per_frame.argmax(axis=0)]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("best-frame-clips")
    return [
        write_clip_mp4v(folder / "counter.mp4", seconds=2, fps=12),
        write_camera_clip(folder / "camera.mp4", seconds=2.0, fps=12),
    ]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> ReferenceImage:
    path = tmp_path_factory.mktemp("best-frame-ref") / "car.png"
    cv2.imwrite(str(path), np.random.default_rng(5).integers(0, 255, (80, 120, 3), dtype=np.uint8))
    return ReferenceImage(hashlib.sha256(path.read_bytes()).hexdigest(), path)


def windows(loaded, path: Path, per_window: int = 6) -> list[np.ndarray]:
    """The windows' frames at the model's size, as WindowRecognizer asks the decoder for them."""
    info = probe(path)
    with open_media(path, info=info) as media:
        spans = plan_windows(media.timed_info, window_s=1.0, frames_per_window=per_window, max_windows=10)
        requests = [
            FrameRequest(per_window, start_s=a, end_s=b, max_side=loaded.frame_side) for a, b in spans
        ]
        return [frames.rgb for _, frames in media.frames(requests)]


def test_batched_best_frame_picks_the_frame_one_at_a_time_picked(loaded_models, family, clips, reference):
    """Both ways the pipeline may call it: encoding the one-frame videos again, and from the per-frame
    features the window's scoring kept (LLaVA-NeXT-Video and SmolVLM2; None, so the same path, for Qwen)."""
    loaded = loaded_models(family)
    references = [[], [reference], [], []]
    picked = []
    for path in clips:
        for rgb in windows(loaded, path):
            expected = one_frame_at_a_time(loaded, rgb, DESCRIPTIONS, references)
            ours = best_frames(loaded, rgb, descriptions=DESCRIPTIONS, references=references)
            assert ours == expected
            kept = score_window(loaded, rgb, fps=6.0, descriptions=DESCRIPTIONS, references=references)
            assert (kept.prefix.frame_features is not None) == (family in REUSING)
            features = kept.prefix.frame_features
            reused = best_frames(
                loaded, rgb, descriptions=DESCRIPTIONS, references=references, frame_features=features
            )
            assert reused == expected
            picked += ours
    assert len(set(picked)) > 1  # the frames really differ in score: a pick is not always frame 0


def test_frames_over_the_budget_go_in_several_batches(loaded_models, clips, monkeypatch):
    import workers.model.best_frame

    loaded = loaded_models("qwen2_5_vl")
    rgb = windows(loaded, clips[0])[0]
    whole = best_frames(loaded, rgb, descriptions=DESCRIPTIONS, references=[[]] * 4)
    monkeypatch.setattr(workers.model.best_frame, "BATCH_TOKEN_BUDGET", 1)  # one frame a batch
    assert best_frames(loaded, rgb, descriptions=DESCRIPTIONS, references=[[]] * 4) == whole


def test_kept_features_over_the_budget_go_in_several_batches(loaded_models, clips, monkeypatch):
    import workers.model.best_frame

    loaded = loaded_models("llava_next_video")
    rgb = windows(loaded, clips[1])[0]
    features = score_window(loaded, rgb, fps=6.0, descriptions=DESCRIPTIONS).prefix.frame_features
    whole = best_frames(loaded, rgb, descriptions=DESCRIPTIONS, references=[[]] * 4)
    monkeypatch.setattr(workers.model.best_frame, "BATCH_TOKEN_BUDGET", 1)  # one frame a batch
    got = best_frames(loaded, rgb, descriptions=DESCRIPTIONS, references=[[]] * 4, frame_features=features)
    assert got == whole


def test_one_frame_and_no_target(loaded_models, clip):
    loaded = loaded_models("llava_next_video")
    assert best_frames(loaded, clip[:1], descriptions=DESCRIPTIONS, references=[[]] * 4) == [0] * 4
    assert best_frames(loaded, clip, descriptions=[], references=[]) == []
    with pytest.raises(ValueError, match="reference lists"):
        best_frames(loaded, clip, descriptions=DESCRIPTIONS, references=[[]])
