"""Evidence continues from the window's scoring encoding: all matched targets in one batched greedy decode.

The reference is today's per-target path, ``evidence_token_ids``, which encodes the video again for every
target: the batched tokens must equal it token for token, for text and image targets, rows of different
lengths, and rows that stop at different points; the scores must equal one full forward per target.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from vigil.config.settings import ModelSettings
from vigil.formats.probe import probe
from vigil.ops.contracts import TargetSpec
from workers.model.generation import decode_text, evidence_token_ids, window_evidence, window_evidence_ids
from workers.model.prompts import evidence_question
from workers.model.scoring import question_suffixes, score_targets_naive, score_window
from workers.model.suffixes import ReferenceImage
from workers.testing.clips import write_clip_mp4v

DESCRIPTIONS = ["a dog", "my car", "smoke", "the neighbour's white van by the gate"]
# Measured on the CPU in float32: the kept encoding and one full forward per target agree within it.
SCORE_ATOL = 1e-5


def _write(path: Path, rgb: np.ndarray) -> ReferenceImage:
    cv2.imwrite(str(path), rgb[:, :, ::-1])
    return ReferenceImage(hashlib.sha256(path.read_bytes()).hexdigest(), path)


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> list[ReferenceImage]:
    folder = tmp_path_factory.mktemp("evidence-refs")
    rng = np.random.default_rng(11)
    shapes = [(90, 130), (140, 100), (64, 64)]
    return [
        _write(folder / f"ref{i}.png", rng.integers(0, 255, (*shape, 3), dtype=np.uint8))
        for i, shape in enumerate(shapes)
    ]


def _per_target(loaded, clip, references, max_new_tokens):
    return [
        evidence_token_ids(loaded, clip, fps=4.0, description=d, references=r, max_new_tokens=max_new_tokens)
        for d, r in zip(DESCRIPTIONS, references, strict=True)
    ]


def _stop_token(rows: list[list[int]]) -> int | None:
    """A token that, taken as the end token, stops some rows early and leaves another at full length."""
    full = max(len(r) for r in rows)
    for token in sorted({t for r in rows for t in r[1:]}):
        lengths = {r.index(token) if token in r else len(r) for r in rows}
        if len(lengths) > 1 and full in lengths and min(lengths) > 0:
            return token
    return None


@pytest.mark.parametrize("strategy", ["batched", "crop"])
def test_batched_evidence_equals_per_target_evidence(loaded_models, family, clip, refs, strategy):
    loaded = loaded_models(family)
    references = [[], [refs[0]], [], [refs[1], refs[2]]]  # words and examples mixed in one batch
    window = score_window(
        loaded, clip, fps=4.0, descriptions=DESCRIPTIONS, references=references, strategy=strategy
    )
    naive = score_targets_naive(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS, references=references)
    np.testing.assert_allclose(window.scores, naive, atol=SCORE_ATOL, rtol=0)

    expected = _per_target(loaded, clip, references, 8)
    assert window_evidence_ids(loaded, window, DESCRIPTIONS, references, max_new_tokens=8) == expected

    # Rows that stop at different points: the same model with an end token that some rows emit early.
    stop = _stop_token(expected)
    if stop is None:  # the tiny random SmolVLM2 answers every question with the same tokens
        assert family == "smolvlm2" and all(r == expected[0] for r in expected)
    else:
        stopping = dataclasses.replace(loaded, eos_ids=(stop,))
        expected = _per_target(stopping, clip, references, 8)
        assert len({len(r) for r in expected}) > 1 and max(len(r) for r in expected) == 8
        got = window_evidence_ids(stopping, window, DESCRIPTIONS, references, max_new_tokens=8)
        assert got == expected
        loaded = stopping
    # The window's encoding is left at its prefix: another continuation from it gives the same again,
    # in any order and for any subset of the targets.
    again = window_evidence_ids(loaded, window, DESCRIPTIONS[::-1], references[::-1], max_new_tokens=8)
    assert again == expected[::-1]
    one = window_evidence_ids(loaded, window, DESCRIPTIONS[1:2], references[1:2], max_new_tokens=8)
    assert one == expected[1:2]


def test_evidence_runs_no_vision_and_no_video_prefill(loaded_models, family, clip, refs, monkeypatch):
    """After scoring, evidence feeds only its question suffixes and the new tokens: the vision tower is not
    called and the video is not fed again."""
    loaded = loaded_models(family)
    references = [[refs[0]], [], []]
    descriptions = DESCRIPTIONS[1:]
    # A reference image's features in the evidence question are built once per process, like the scores'.
    window_evidence(
        loaded,
        score_window(loaded, clip, fps=4.0, descriptions=descriptions),
        descriptions,
        references,
        max_new_tokens=1,
    )
    window = score_window(loaded, clip, fps=4.0, descriptions=descriptions, references=references)
    inner = loaded.model.model
    vision_calls: list[str] = []
    for name in ("get_video_features", "get_image_features"):
        if hasattr(inner, name):
            original = getattr(inner, name)

            def counting(*args, _original=original, _name=name, **kwargs):
                vision_calls.append(_name)
                return _original(*args, **kwargs)

            monkeypatch.setattr(inner, name, counting)
    fed: list[int] = []

    def record(_module, args, kwargs):
        ids = kwargs.get("input_ids")
        embeds = kwargs.get("inputs_embeds")
        fed.append(int((ids if ids is not None else embeds).shape[1]))

    hook = inner.get_decoder().register_forward_pre_hook(record, with_kwargs=True)
    try:
        texts = window_evidence(loaded, window, descriptions, references, max_new_tokens=5)
    finally:
        hook.remove()
    assert vision_calls == []
    questions = [evidence_question(d, len(r)) for d, r in zip(descriptions, references, strict=True)]
    rows = question_suffixes(loaded, window.prefix, window.head, questions, references)
    assert fed[0] == max(len(row.ids) for row in rows)  # the suffixes, then one token per step
    assert fed[1:] == [1] * (len(fed) - 1)
    assert texts == [
        decode_text(loaded, t) for t in _per_target_subset(loaded, clip, descriptions, references)
    ]


def _per_target_subset(loaded, clip, descriptions, references):
    return [
        evidence_token_ids(loaded, clip, fps=4.0, description=d, references=r, max_new_tokens=5)
        for d, r in zip(descriptions, references, strict=True)
    ]


def test_evidence_in_chunks_equals_one_batch(loaded_models, clip, monkeypatch):
    """Past the token budget the rows are decoded in several batches; the tokens do not change."""
    import workers.model.generation

    loaded = loaded_models("qwen2_5_vl")
    window = score_window(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS)
    whole = window_evidence_ids(loaded, window, DESCRIPTIONS, [()] * 4, max_new_tokens=6)
    monkeypatch.setattr(workers.model.generation, "BATCH_TOKEN_BUDGET", window.prefix.length * 3)
    assert window_evidence_ids(loaded, window, DESCRIPTIONS, [()] * 4, max_new_tokens=6) == whole


def test_the_recogniser_puts_each_evidence_on_its_own_target(tmp_path: Path, loaded_models) -> None:
    """Through WindowRecognizer: matched targets get the evidence of their own question (equal to the
    per-target path over the same window frames), unmatched ones none."""
    from workers.analysis.pipeline import WindowRecognizer
    from workers.analysis.thumbnails import THUMBNAIL_MAX_SIDE
    from workers.decode.frames import analysis_requests, open_media, plan_windows

    path = write_clip_mp4v(tmp_path / "c.mp4", seconds=2, fps=8)
    loaded = loaded_models("llava_next_video")
    settings = ModelSettings(
        id="tiny", frames_per_window=4, window_s=1.0, evidence_max_tokens=6, evidence_windows="every_match"
    )
    recognizer = WindowRecognizer(loaded, settings, thumbnails_dir=tmp_path / "thumbs")
    targets = [
        TargetSpec(id=1, name="dog", description="a dog", threshold=0.0),
        TargetSpec(id=2, name="never", description="a red car", threshold=1.0),
        TargetSpec(id=3, name="van", description="the neighbour's white van", threshold=0.0),
    ]
    got = recognizer.recognize(path, probe(path), targets, media_id=1)
    with open_media(path, info=probe(path)) as media:
        windows = plan_windows(media.timed_info, window_s=1.0, frames_per_window=4, max_windows=10)
        requests = analysis_requests(
            windows, 4, mode="exact", max_side=loaded.frame_side, full_side=THUMBNAIL_MAX_SIDE, caption=False
        )
        frames = dict(media.frames(requests))
    assert len(got.results) == 3 * len(windows) == 6
    for result in got.results:
        if result.target_id == 2:
            assert not result.matched and result.evidence is None and result.thumbnail_path is None
            continue
        rgb = frames[result.window_index].rgb
        description = targets[result.target_id - 1].description
        tokens = evidence_token_ids(
            loaded, rgb, fps=frames[result.window_index].fps, description=description, max_new_tokens=6
        )
        assert result.matched and result.evidence == decode_text(loaded, tokens)
