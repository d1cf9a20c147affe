"""Evidence only where a person reads it (``model.evidence_windows``): with ``best_of_run`` each run of
consecutive matched windows of a target gets evidence and the best-frame search on its best window only
(the window an alert on the run carries), the same text and thumbnail ``every_match`` writes there, and
the run's other matched windows their middle frame; ``every_match`` writes both on every matched window.
Through WindowRecognizer with tiny models on an H.264 clip."""

from __future__ import annotations

from pathlib import Path

import pytest

from vigil.config.settings import ModelSettings
from vigil.formats.probe import probe
from vigil.ops.contracts import Recognition, TargetSpec
from workers.analysis import pipeline
from workers.analysis.pipeline import WindowRecognizer
from workers.analysis.thumbnails import THUMBNAIL_MAX_SIDE, ThumbnailWriter
from workers.decode.frames import analysis_requests, open_media, plan_windows
from workers.testing.clips import write_camera_clip

WINDOWS = 8


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("evidence-runs")
    return write_camera_clip(folder / "c.mp4", seconds=WINDOWS, fps=8, size=(160, 96), cut_s=1.0)


def recognise(
    loaded, tmp_path: Path, clip: Path, policy: str, thresholds: tuple[float, float]
) -> Recognition:
    settings = ModelSettings(
        id="tiny",
        frames_per_window=4,
        window_s=1.0,
        evidence_max_tokens=4,
        evidence_windows=policy,  # type: ignore[arg-type]
    )
    recognizer = WindowRecognizer(loaded, settings, thumbnails_dir=tmp_path / policy)
    targets = [
        TargetSpec(1, "person", "a person walking", thresholds[0]),
        TargetSpec(2, "van", "a white delivery van", thresholds[1]),
    ]
    return recognizer.recognize(clip, probe(clip), targets, media_id=1)


def runs(matched: list[bool]) -> list[list[int]]:
    out: list[list[int]] = []
    for i, hit in enumerate(matched):
        if hit:
            if i and matched[i - 1]:
                out[-1].append(i)
            else:
                out.append([i])
    return out


def split_threshold(scores: list[float]) -> float:
    """The window score that, as a threshold, cuts the matched windows into the most runs."""
    return max(sorted(set(scores)), key=lambda t: len(runs([s >= t for s in scores])))


def by_target(recognition: Recognition, target_id: int) -> list:
    return sorted((r for r in recognition.results if r.target_id == target_id), key=lambda r: r.window_index)


def test_each_run_gets_evidence_on_its_best_window_only(loaded_models, tmp_path: Path, clip: Path) -> None:
    loaded = loaded_models("llava_next_video")
    every = recognise(loaded, tmp_path, clip, "every_match", (0.0, 0.0))
    assert every.windows == WINDOWS
    assert all(r.matched and r.evidence for r in every.results)  # every_match: every matched window
    person = [r.p_yes for r in by_target(every, 1)]
    threshold = split_threshold(person)
    expected_runs = runs([p >= threshold for p in person])
    assert len(expected_runs) >= 2  # the case this test is about: several runs of one target in one file

    got = recognise(loaded, tmp_path, clip, "best_of_run", (threshold, 0.0))
    results, full = by_target(got, 1), by_target(every, 1)
    bests = [max(run, key=lambda w: (person[w], -w)) for run in expected_runs]  # the first of the highest
    assert [r.window_index for r in results if r.evidence] == bests
    for w in bests:
        assert results[w].evidence == full[w].evidence  # the text every_match wrote there
    van = by_target(got, 2)  # matched everywhere: one run, one evidence
    van_scores = [r.p_yes for r in van]
    assert [r.window_index for r in van if r.evidence] == [van_scores.index(max(van_scores))]
    assert [r.p_yes for r in results] == person  # the policy changes no score


def middle_thumbnails(loaded, clip: Path, folder: Path) -> list[bytes]:
    """Each window's middle sampled frame as ThumbnailWriter.middle writes it (the worker's decode path)."""
    with open_media(clip, info=probe(clip)) as media:
        windows = plan_windows(media.timed_info, window_s=1.0, frames_per_window=4)
        requests = analysis_requests(
            windows, 4, mode="exact", max_side=loaded.frame_side, full_side=THUMBNAIL_MAX_SIDE, caption=False
        )
        writer = ThumbnailWriter(folder)
        return [writer.middle(f"{i}.jpg", frames).read_bytes() for i, frames in media.frames(requests)]


@pytest.mark.parametrize("family", ["llava_next_video", "smolvlm2"])  # SmolVLM2: from the kept features
def test_only_each_runs_best_window_gets_the_best_frame_search(
    loaded_models, tmp_path: Path, clip: Path, family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = loaded_models(family)
    every = recognise(loaded, tmp_path, clip, "every_match", (0.0, 0.0))
    person = [r.p_yes for r in by_target(every, 1)]
    threshold = split_threshold(person)
    expected_runs = runs([p >= threshold for p in person])
    searched: list[int] = []  # targets per best-frame pass

    def counting(*args, **kwargs):
        searched.append(len(kwargs["descriptions"]))
        return real(*args, **kwargs)

    real = pipeline.best_frames
    monkeypatch.setattr(pipeline, "best_frames", counting)
    got = recognise(loaded, tmp_path, clip, "best_of_run", (threshold, 0.0))
    assert [(r.p_yes, r.target_id) for r in got.results] == [(r.p_yes, r.target_id) for r in every.results]
    van = [r.p_yes for r in by_target(got, 2)]
    van_best = van.index(max(van))
    assert sum(searched) == len(expected_runs) + 1  # one search per run and target: the van has one run
    middles = middle_thumbnails(loaded, clip, tmp_path / "middles")
    person_bests = [max(run, key=lambda w: (person[w], -w)) for run in expected_runs]
    for target_id, bests in ((1, person_bests), (2, [van_best])):
        for ours, theirs in zip(by_target(got, target_id), by_target(every, target_id), strict=True):
            w, path = ours.window_index, Path(ours.thumbnail_path or "")
            if not ours.matched:
                assert ours.thumbnail_path is None
            elif w in bests:  # the best frame every_match picked, the same file
                assert path.name == f"w{w:04d}-t{target_id}.jpg"
                assert path.read_bytes() == Path(theirs.thumbnail_path or "").read_bytes()
            else:  # the window's middle sampled frame, at source resolution
                assert path.name == f"w{w:04d}-middle.jpg" and path.read_bytes() == middles[w]
    assert sorted(p.name for p in (tmp_path / "best_of_run" / "1").iterdir()) == sorted(
        {Path(r.thumbnail_path).name for r in got.results if r.thumbnail_path}
    )  # no thumbnail written that no detection shows


def test_the_default_is_best_of_run_and_other_values_are_refused() -> None:
    assert ModelSettings().evidence_windows == "best_of_run"
    with pytest.raises(ValueError, match="evidence_windows"):
        ModelSettings(evidence_windows="sometimes")  # type: ignore[arg-type]
