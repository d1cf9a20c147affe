"""Targets given by example: reference images in each target's suffix, the video still encoded once.

Every score is compared with one full forward of the same interleaved prompt (video, images, question)
in which the model computes every vision feature itself; the evidence loop with transformers' own
greedy ``generate`` over that whole prompt, which checks the positions after an image suffix (Qwen's
3-D M-RoPE advances fewer positions than it has image tokens).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from workers.model.generation import evidence_token_ids
from workers.model.prompts import evidence_question
from workers.model.scoring import (
    question_for,
    score_targets,
    score_targets_naive,
    video_inputs,
)
from workers.model.suffixes import ReferenceImage

DESCRIPTIONS = ["a dog", "my car", "smoke", "the neighbour's van"]
# Tolerance measured on the CPU in float32: the shared prefix and the full forward agree within it.
ATOL = 1e-4


def _write(path: Path, rgb: np.ndarray) -> ReferenceImage:
    import hashlib

    cv2.imwrite(str(path), rgb[:, :, ::-1])
    return ReferenceImage(hashlib.sha256(path.read_bytes()).hexdigest(), path)


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> list[ReferenceImage]:
    folder = tmp_path_factory.mktemp("refs")
    rng = np.random.default_rng(7)
    shapes = [(90, 130), (140, 100), (64, 64)]
    return [
        _write(folder / f"ref{i}.png", rng.integers(0, 255, (*shape, 3), dtype=np.uint8))
        for i, shape in enumerate(shapes)
    ]


def test_questions_by_example():
    one = "Is the red car shown in this image in the video? Answer yes or no."
    assert question_for("a red car.", 1) == one
    assert question_for("my car", 2) == "Is the my car shown in these images in the video? Answer yes or no."
    assert question_for("a red car") == "Does this video show a red car? Answer yes or no."
    assert "shown in this image appears in the video" in evidence_question("the dog", 1)


@pytest.mark.parametrize("strategy", ["batched", "crop"])
def test_image_targets_equal_full_forward(loaded_models, family, clip, refs, strategy):
    loaded = loaded_models(family)
    references = [[], [refs[0]], [], [refs[1], refs[2]]]  # words and examples mixed in one batch
    naive = score_targets_naive(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS, references=references)
    ours = score_targets(
        loaded, clip, fps=4.0, descriptions=DESCRIPTIONS, references=references, strategy=strategy
    )
    np.testing.assert_allclose(ours, naive, atol=ATOL, rtol=0)
    words = score_targets(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS)
    assert ours[0] == pytest.approx(words[0], abs=ATOL)  # the word targets are untouched by their neighbours
    assert abs(ours[1] - words[1]) > 1e-6  # the image reaches the logits


def test_the_image_itself_changes_the_score(loaded_models, family, clip, refs):
    loaded = loaded_models(family)
    a = score_targets(loaded, clip, fps=4.0, descriptions=["my car"], references=[[refs[0]]])
    b = score_targets(loaded, clip, fps=4.0, descriptions=["my car"], references=[[refs[1]]])
    assert abs(a[0] - b[0]) > 1e-6


def test_suffix_features_are_built_once_per_target(loaded_models, clip, refs):
    loaded = loaded_models("qwen2_5_vl")
    other = np.full_like(clip, 90)
    descriptions, references = ["the parcel", "my bike"], [[refs[2]], [refs[0], refs[1]]]
    score_targets(loaded, clip, fps=4.0, descriptions=descriptions, references=references)
    built = loaded.suffixes.builds
    again = score_targets(loaded, other, fps=4.0, descriptions=descriptions, references=references)
    assert loaded.suffixes.builds == built  # a new video, the same targets: no vision work for them
    naive = score_targets_naive(loaded, other, fps=4.0, descriptions=descriptions, references=references)
    np.testing.assert_allclose(again, naive, atol=ATOL, rtol=0)


def test_references_must_match_descriptions(loaded_models, clip, refs):
    with pytest.raises(ValueError, match="reference lists"):
        score_targets(
            loaded_models("smolvlm2"), clip, fps=4.0, descriptions=["a", "b"], references=[[refs[0]]]
        )


def test_image_evidence_matches_generate(loaded_models, family, clip, refs):
    """Greedy evidence over the cached prefix + image suffix equals generate() on the whole prompt."""
    loaded = loaded_models(family)
    question = evidence_question("my car", 1)
    head, tail = loaded.adapter.question_parts(question, images=1)
    inputs = video_inputs(loaded, clip, 4.0, head + tail, [refs[0].rgb()])
    with torch.inference_mode():
        out = loaded.model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    reference = out[0, inputs["input_ids"].shape[1] :].tolist()
    ours = evidence_token_ids(
        loaded, clip, fps=4.0, description="my car", references=[refs[0]], max_new_tokens=6
    )
    assert ours and ours == reference[: len(ours)]


def test_image_suffixes_batch_together_over_a_repeated_cache(loaded_models, family, clip, refs):
    """forward_suffixes pads rows with image features like text rows (features scattered row by row)."""
    from workers.model.references import image_suffix
    from workers.model.scoring import encode_prefix, forward_suffixes, p_yes

    loaded = loaded_models(family)
    references = [[refs[0]], [refs[1], refs[2]]]
    parts = [loaded.adapter.question_parts(question_for("my car", len(r)), images=len(r)) for r in references]
    with torch.inference_mode():
        prefix = encode_prefix(loaded, clip, fps=4.0, head_text=parts[0][0])
        pairs = zip(parts, references, strict=True)
        rows = [image_suffix(loaded, prefix.trailing_text, tail, r) for (_, tail), r in pairs]
        assert len(rows[0].ids) != len(rows[1].ids)  # padding is exercised
        prefix.cache.batch_repeat_interleave(2)
        ours = p_yes(loaded, forward_suffixes(loaded, prefix, rows))
    naive = score_targets_naive(loaded, clip, fps=4.0, descriptions=["my car"] * 2, references=references)
    np.testing.assert_allclose(ours, naive, atol=ATOL, rtol=0)


def test_llava_shows_a_reference_as_one_frame_of_video_tokens(loaded_models, clip, refs):
    """LLaVA-NeXT-Video: a reference costs the tokens of one frame of the clip, not anyres tokens."""
    from workers.model.references import image_suffix
    from workers.model.scoring import encode_prefix

    loaded = loaded_models("llava_next_video")
    head, tail = loaded.adapter.question_parts(question_for("my car", 2), images=2)
    with torch.inference_mode():
        prefix = encode_prefix(loaded, clip[:1], fps=4.0, head_text=head)
        suffix = image_suffix(loaded, prefix.trailing_text, tail, [refs[0], refs[1]])
    one_frame = prefix.frame_features.shape[1]  # type: ignore[union-attr]
    assert suffix.image_tokens == 2 * one_frame
    assert suffix.ids.count(loaded.image_token_id) == 2 * one_frame


def test_llava_sees_the_whole_of_a_wide_reference(loaded_models, clip, tmp_path):
    """A 3:1 reference is padded to a square, not center-cropped as the video processor crops frames: two
    references that differ only in their leftmost sixth score differently."""
    loaded = loaded_models("llava_next_video")
    rng = np.random.default_rng(3)
    wide = rng.integers(0, 255, (60, 180, 3), dtype=np.uint8)
    other = wide.copy()
    other[:, :30] = 255 - other[:, :30]
    a = _write(tmp_path / "a.png", wide)
    b = _write(tmp_path / "b.png", other)
    scores = score_targets(loaded, clip, fps=4.0, descriptions=["my car"] * 2, references=[[a], [b]])
    assert abs(scores[0] - scores[1]) > 1e-6
