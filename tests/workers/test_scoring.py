from __future__ import annotations

import numpy as np
import pytest

from workers.model.generation import decode_text, evidence_token_ids
from workers.model.prompts import TEMPLATE_VERSION
from workers.model.scoring import (
    question_for,
    score_targets,
    score_targets_naive,
)

DESCRIPTIONS = ["a dog", "a red car parked by the gate", "smoke", "a person walking a dog at night"]


def test_question_is_versioned_yes_no():
    assert TEMPLATE_VERSION == 2
    assert question_for("a red car.") == "Does this video show a red car? Answer yes or no."


@pytest.mark.parametrize("strategy", ["batched", "crop"])
def test_shared_prefix_equals_naive(loaded_models, family, clip, strategy):
    loaded = loaded_models(family)
    naive = score_targets_naive(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS)
    ours = score_targets(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS, strategy=strategy)
    assert len(ours) == len(DESCRIPTIONS)
    assert all(0.0 < p < 1.0 for p in ours)
    np.testing.assert_allclose(ours, naive, atol=1e-4, rtol=0)
    # Different questions give different scores: the suffix really reaches the logits.
    assert len({round(p, 7) for p in naive}) > 1


def test_one_target_and_many_targets(loaded_models, clip):
    loaded = loaded_models("qwen2_5_vl")
    one = score_targets(loaded, clip, fps=4.0, descriptions=["a dog"])
    assert one == pytest.approx(score_targets_naive(loaded, clip, fps=4.0, descriptions=["a dog"]), abs=1e-4)
    many = [f"object number {i} near the door" for i in range(33)]
    batched = score_targets(loaded, clip, fps=4.0, descriptions=many, strategy="batched")
    cropped = score_targets(loaded, clip, fps=4.0, descriptions=many, strategy="crop")
    np.testing.assert_allclose(batched, cropped, atol=1e-4, rtol=0)
    naive_some = score_targets_naive(loaded, clip, fps=4.0, descriptions=many[:3] + many[-2:])
    np.testing.assert_allclose(batched[:3] + batched[-2:], naive_some, atol=1e-4, rtol=0)


def test_order_of_descriptions_does_not_matter(loaded_models, clip):
    loaded = loaded_models("llava_next_video")
    forward = score_targets(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS)
    backward = score_targets(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS[::-1])
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-5, rtol=0)


def test_no_descriptions_no_work(loaded_models, clip):
    assert score_targets(loaded_models("smolvlm2"), clip, fps=4.0, descriptions=[]) == []


def test_image_is_scored_as_one_frame(loaded_models, family):
    loaded = loaded_models(family)
    image = np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    ours = score_targets(loaded, image, fps=1.0, descriptions=DESCRIPTIONS[:2])
    naive = score_targets_naive(loaded, image, fps=1.0, descriptions=DESCRIPTIONS[:2])
    np.testing.assert_allclose(ours, naive, atol=1e-4, rtol=0)


def test_video_changes_the_score(loaded_models, clip):
    loaded = loaded_models("qwen2_vl")
    other = np.full_like(clip, 200)
    a = score_targets(loaded, clip, fps=4.0, descriptions=["a dog"])
    b = score_targets(loaded, other, fps=4.0, descriptions=["a dog"])
    assert a != b


def test_bad_frames_are_refused(loaded_models):
    with pytest.raises(ValueError, match="T, H, W, 3"):
        score_targets(loaded_models("qwen2_vl"), np.zeros((2, 8, 8)), fps=1.0, descriptions=["x"])


CONTROL = {c: None for c in range(32) if chr(c) not in "\n\t"} | {0x7F: None}


def test_evidence_is_bounded_text(loaded_models, family, clip):
    loaded = loaded_models(family)
    ids = evidence_token_ids(loaded, clip, fps=4.0, description="a dog", max_new_tokens=6)
    text = decode_text(loaded, ids)
    longer = evidence_token_ids(loaded, clip, fps=4.0, description="a dog", max_new_tokens=9)
    assert isinstance(text, str)
    assert 0 < len(ids) <= 6
    assert text == loaded.tokenizer.decode(ids, skip_special_tokens=True).translate(CONTROL).strip()
    assert not any(ord(c) < 32 and c not in "\n\t" for c in text)
    assert longer[: len(ids)] == ids  # greedy over the kept cache is deterministic


def test_evidence_matches_generate(loaded_models, family, clip):
    """The manual loop over the prefix cache agrees with transformers' own greedy generate."""
    import torch

    from workers.model.prompts import EVIDENCE_TEMPLATE
    from workers.model.scoring import video_inputs

    loaded = loaded_models(family)
    head, tail = loaded.adapter.question_parts(EVIDENCE_TEMPLATE.format(description="a dog"))
    inputs = video_inputs(loaded, clip, 4.0, head + tail)
    with torch.inference_mode():
        out = loaded.model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    reference = out[0, inputs["input_ids"].shape[1] :].tolist()
    ours = evidence_token_ids(loaded, clip, fps=4.0, description="a dog", max_new_tokens=5)
    assert ours == reference[: len(ours)]


def test_generated_text_never_holds_control_characters(loaded_models) -> None:
    loaded = loaded_models("llava_next_video")
    ids = loaded.tokenizer.encode("a\x00b\x07c\nd", add_special_tokens=False)
    assert decode_text(loaded, ids) == "abc\nd"
