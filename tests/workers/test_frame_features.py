"""The per-frame video features a window's scoring keeps are the features each frame gets as a one-frame
video (so the best-frame pass may take them instead of a second vision pass), and the one-frame prefixes
built from them score every (frame, question) pair as the processed one-frame videos do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workers.model.best_frame import _frame_scores, _inputs
from workers.model.frame_features import keep_video_features, one_frame_ids, one_frame_prompts
from workers.model.prompts import question_for
from workers.model.scoring import score_window

DESCRIPTIONS = ["a dog", "my car", "smoke"]
REUSING = ["llava_next_video", "smolvlm2"]  # SmolVLM2: every frame an image to SigLIP and the connector


def _head(loaded) -> str:
    return loaded.adapter.question_parts(question_for(DESCRIPTIONS[0], 0), images=0)[0]


@pytest.mark.parametrize("family", REUSING)
def test_a_frames_slice_of_the_window_features_is_its_one_frame_features(loaded_models, family, clip):
    loaded = loaded_models(family)
    kept = score_window(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS).prefix.frame_features
    assert kept is not None and kept.shape[0] == len(clip)
    with torch.inference_mode():
        alone = keep_video_features(loaded, _inputs(loaded, clip, _head(loaded)))
    assert alone is not None and alone.shape == kept.shape
    torch.testing.assert_close(kept, alone, rtol=0, atol=1e-6)
    assert not torch.equal(kept[0], kept[1])  # the frames differ: a slice is not any frame's features


@pytest.mark.parametrize("family", REUSING)
def test_one_frame_prefixes_from_kept_features_score_as_the_processed_ones(loaded_models, family, clip):
    loaded = loaded_models(family)
    head, questions = _head(loaded), [question_for(d, 0) for d in DESCRIPTIONS]
    kept = score_window(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS).prefix.frame_features
    with torch.inference_mode():
        processed = _frame_scores(loaded, _inputs(loaded, clip, head), head, questions, [[]] * 3)
        built = one_frame_prompts(loaded, one_frame_ids(loaded, head, kept.shape[1], clip[0]), kept)
        reused = _frame_scores(loaded, built, head, questions, [[]] * 3)
    assert processed.shape == (len(clip), len(DESCRIPTIONS))
    np.testing.assert_allclose(reused, processed, rtol=0, atol=1e-5)
    assert np.ptp(processed, axis=0).max() > 1e-4  # the frames' scores differ, so the check can fail


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen2_vl"])
def test_families_whose_frames_are_not_encoded_alone_keep_nothing(loaded_models, family, clip):
    loaded = loaded_models(family)
    assert score_window(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS).prefix.frame_features is None


@pytest.mark.parametrize("family", REUSING)
def test_one_frame_ids_are_the_processors(loaded_models, family, clip):
    loaded = loaded_models(family)
    head = _head(loaded)
    processed = _inputs(loaded, clip[3:4], head)
    vision = loaded.model.config.video_token_index if family == "llava_next_video" else loaded.image_token_id
    tokens = int((processed["input_ids"] == vision).sum())
    assert tokens > 1
    assert torch.equal(one_frame_ids(loaded, head, tokens, clip[0]), processed["input_ids"])
    with pytest.raises(ValueError, match="holds 0 video tokens"):
        one_frame_ids(loaded, "no video here", tokens, clip[0])


@pytest.mark.parametrize("family", REUSING)
def test_features_of_another_frame_count_are_refused(loaded_models, family, clip):
    from workers.model.best_frame import best_frames

    loaded = loaded_models(family)
    kept = score_window(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS).prefix.frame_features
    with pytest.raises(ValueError, match="features of 7 frames for 8 frames"):
        best_frames(loaded, clip, descriptions=DESCRIPTIONS, references=[[]] * 3, frame_features=kept[:-1])
