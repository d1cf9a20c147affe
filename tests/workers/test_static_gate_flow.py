"""The static-scene gate through the real recogniser (tiny LLaVA-NeXT-Video) and the worker: unchanged
windows inherit without a model call, the first window and changed windows are scored, the gate is off
unless the media's configured source turns it on."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, text

from vigil.config.settings import ModelSettings, Settings, SourceSettings, TargetSettings
from vigil.formats.probe import probe
from vigil.media.registry import ensure_source, register_file, sync_sources, sync_targets
from vigil.ops.contracts import AnalyzePayload, Recognition, TargetSpec
from vigil.store.db import write_session
from vigil.store.schema import Analysis, Detection
from workers.analysis import pipeline
from workers.analysis.pipeline import WindowRecognizer
from workers.analysis.runner import analyze_media
from workers.analysis.runtime import WorkerRuntime
from workers.testing.clips import write_camera_clip
from workers.testing.scenes import StaticScene

# Six 1 s windows; a person crosses during window 3 only. With the gate at 8: 0 scored (the first), 1 and
# 2 inherit 0, 3 scored (changed), 4 scored (changed back: compared with 3), 5 inherits 4.
SCORED, INHERITED = [0, 3, 4], [1, 2, 5]
GATE = 8.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gate") / "cam.mp4"
    return write_camera_clip(out, seconds=6, fps=10, size=(160, 96), frame=StaticScene(active_s=(3.0, 4.0)))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the recogniser's model calls: scoring passes, best-frame passes and evidence generations."""
    counted: Counter[str] = Counter()
    for name in ("score_window", "best_frames", "window_evidence"):
        real = getattr(pipeline, name)

        def counting(*args: object, _real=real, _name=name, **kwargs: object) -> object:
            counted[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(pipeline, name, counting)
    return counted


def recognise(
    loaded_models, tmp_path: Path, clip: Path, *, evidence_windows: str = "every_match", **kwargs: float
) -> Recognition:
    model = ModelSettings(
        id="tiny",
        frames_per_window=4,
        window_s=1.0,
        evidence=True,
        evidence_max_tokens=4,
        evidence_windows=evidence_windows,  # type: ignore[arg-type]
    )
    recognizer = WindowRecognizer(loaded_models("llava_next_video"), model, thumbnails_dir=tmp_path / "th")
    targets = [
        TargetSpec(1, "person", "a person walking", threshold=0.0),  # every window matches
        TargetSpec(2, "van", "a white delivery van", threshold=1.0),  # none does
    ]
    return recognizer.recognize(clip, probe(clip), targets, media_id=7, **kwargs)


def by_window(recognition: Recognition, target_id: int) -> dict[int, object]:
    return {r.window_index: r for r in recognition.results if r.target_id == target_id}


def test_unchanged_windows_inherit_the_last_scored_window_without_a_model_call(
    loaded_models, tmp_path: Path, clip: Path, calls: Counter[str]
) -> None:
    on = recognise(loaded_models, tmp_path, clip, static_gate=GATE)
    on_calls = dict(calls)
    calls.clear()
    off = recognise(loaded_models, tmp_path, clip)
    assert off.windows == on.windows == 6
    # Off: one scoring pass, one best-frame pass and one evidence generation per (matched) window. On: the
    # same for the three scored windows only.
    assert dict(calls) == {"score_window": 6, "best_frames": 6, "window_evidence": 6}
    assert on_calls == {"score_window": 3, "best_frames": 3, "window_evidence": 3}
    person, van = by_window(on, 1), by_window(on, 2)
    assert [w for w, r in sorted(person.items()) if r.inherited] == INHERITED  # type: ignore[attr-defined]
    assert [w for w, r in sorted(van.items()) if r.inherited] == INHERITED  # type: ignore[attr-defined]
    for window, source in ((1, 0), (2, 0), (5, 4)):
        for results in (person, van):
            got, scored = results[window], results[source]
            assert (got.p_yes, got.matched, got.evidence) == (scored.p_yes, scored.matched, scored.evidence)  # type: ignore[attr-defined]
    # the scored windows score exactly as with the gate off; inherited ones match the same way
    off_person = by_window(off, 1)
    assert [person[w].p_yes for w in SCORED] == [off_person[w].p_yes for w in SCORED]  # type: ignore[attr-defined]
    assert all(person[w].matched and not van[w].matched for w in range(6))  # type: ignore[attr-defined]
    inherited_thumb = Path(person[1].thumbnail_path)  # type: ignore[attr-defined]
    assert inherited_thumb.name == "w0001-inherited.jpg" and inherited_thumb.is_file()
    assert on.params["static_gate"] == GATE and off.params["static_gate"] == 0.0


def test_best_of_run_evidence_goes_to_the_runs_best_scored_window_gate_on_or_off(
    loaded_models, tmp_path: Path, clip: Path, calls: Counter[str]
) -> None:
    """The person matches every window (one run): one evidence generation and one best-frame search, on
    the run's best window (the first with the highest P(yes)), which is a scored one; the van never
    matches: none."""
    for gate in (0.0, GATE):
        calls.clear()
        got = recognise(loaded_models, tmp_path, clip, evidence_windows="best_of_run", static_gate=gate)
        person = by_window(got, 1)
        scores = [person[w].p_yes for w in range(6)]  # type: ignore[attr-defined]
        best = scores.index(max(scores))
        assert calls["window_evidence"] == calls["best_frames"] == 1
        assert [w for w in range(6) if person[w].evidence] == [best]  # type: ignore[attr-defined]
        assert not person[best].inherited  # type: ignore[attr-defined]
        thumbs = {w: Path(person[w].thumbnail_path).name for w in range(6)}  # type: ignore[attr-defined]
        assert thumbs[best] == f"w{best:04d}-t1.jpg"  # the best frame; the others cost no model run
        assert all(
            name == f"w{w:04d}-{'inherited' if person[w].inherited else 'middle'}.jpg"  # type: ignore[attr-defined]
            for w, name in thumbs.items()
            if w != best
        )
        assert not any(r.evidence for r in by_window(got, 2).values())  # type: ignore[attr-defined]
        assert got.params["evidence_windows"] == "best_of_run"


def test_the_gate_is_off_by_default_and_the_first_window_is_always_scored(
    loaded_models, tmp_path: Path, clip: Path, calls: Counter[str]
) -> None:
    assert SourceSettings(name="cam", path=tmp_path).static_gate == 0.0
    off = recognise(loaded_models, tmp_path, clip)
    assert not any(r.inherited for r in off.results)
    # a gate so loose that every window is "unchanged" still scores the first one
    loose = recognise(loaded_models, tmp_path, clip, static_gate=255.0)
    assert sorted({r.window_index for r in loose.results if not r.inherited}) == [0]
    assert calls["score_window"] == 6 + 1


def test_the_gate_decides_each_window_of_a_batched_group(loaded_models, tmp_path: Path, clip: Path) -> None:
    """With consecutive windows scored as one batch, the changed windows of a group are batched and the
    unchanged ones inherit, from a window of the same group too: the same rows as window by window."""

    def rows(batch_tokens: int) -> list[tuple[int, int, float, bool, bool]]:
        model = ModelSettings(id="tiny", frames_per_window=4, window_s=1.0, window_batch_tokens=batch_tokens)
        recognizer = WindowRecognizer(
            loaded_models("llava_next_video"), model, thumbnails_dir=tmp_path / "th"
        )
        targets = [TargetSpec(1, "van", "a white delivery van", threshold=1.0)]  # no match: batches stay
        got = recognizer.recognize(clip, probe(clip), targets, media_id=8, static_gate=GATE)
        return [(r.window_index, r.target_id, round(r.p_yes, 4), r.matched, r.inherited) for r in got.results]

    alone, batched = rows(0), rows(1_000_000)
    assert [w for w, *_, inherited in batched if inherited] == INHERITED
    assert batched == alone


@pytest.fixture
def settings(sqlite_url: str, tmp_path: Path, tiny_llava: Path) -> Settings:
    return Settings(
        database={"url": sqlite_url},
        broker={"url": f"sqla+sqlite:///{tmp_path / 'broker.db'}"},
        model={"id": str(tiny_llava), "frames_per_window": 4, "window_s": 1.0, "evidence": False},
        storage={"data_dir": tmp_path / "data"},
        targets=[TargetSettings(name="person", description="a person walking", threshold=1.0)],
        watch={
            "sources": [SourceSettings(name="cam", path=tmp_path / "cam", static_gate=GATE)],
        },
    )


def analyse(settings: Settings, source: str, clip: Path) -> list[tuple[int, bool]]:
    """Register ``clip`` under ``source`` (configured, or ad hoc as `vigil scan` makes it), run the worker's
    analysis, return the stored (window, inherited) of its detections."""
    runtime = WorkerRuntime(settings)
    folder = clip.parent
    with write_session(runtime.factory) as session:
        sync_targets(session, settings.targets, references_dir=settings.storage.references_dir)
        configured = sync_sources(session, settings.watch.sources)
        row = configured[source] if source in configured else ensure_source(session, source, folder)
        source_id = row.id
    media_id = register_file(
        runtime.factory,
        source_id=source_id,
        root=folder,
        path=clip,
        info=probe(clip),
        duplicate_content="analyze",  # the same clip under both sources
    ).media_id
    assert analyze_media(runtime, AnalyzePayload(media_id=media_id)).status == "done"
    with runtime.factory() as session:
        analysis = session.scalars(select(Analysis).where(Analysis.media_id == media_id)).one()
        assert analysis.params["static_gate"] == (GATE if source == "cam" else 0.0)
        view = session.execute(
            text(
                "SELECT window_index, inherited FROM detections_v WHERE media_id = :m ORDER BY window_index"
            ),
            {"m": media_id},
        ).all()
        stored = session.scalars(
            select(Detection).where(Detection.media_id == media_id).order_by(Detection.window_index)
        ).all()
    assert [(w, bool(i)) for w, i in view] == [(d.window_index, d.inherited) for d in stored]
    return [(d.window_index, d.inherited) for d in stored]


def test_the_worker_gates_media_of_a_configured_source_and_not_of_an_ad_hoc_one(
    settings: Settings, tmp_path: Path, clip: Path
) -> None:
    (tmp_path / "cam").mkdir()
    cam_clip = tmp_path / "cam" / "a.mp4"
    cam_clip.write_bytes(clip.read_bytes())
    assert analyse(settings, "cam", cam_clip) == [(w, w in INHERITED) for w in range(6)]
    (tmp_path / "scan").mkdir()
    scanned = tmp_path / "scan" / "b.mp4"
    scanned.write_bytes(clip.read_bytes())
    assert analyse(settings, "scan", scanned) == [(w, False) for w in range(6)]
