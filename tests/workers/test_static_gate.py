"""The static-scene gate: the measure on identical, noisy and changed scenes, chaining against the last
scored window (slow drift), and what an inherited window carries."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vigil.ops.contracts import WindowResult
from workers.analysis.static_gate import StaticGate, difference, inherit, signature
from workers.analysis.thumbnails import ThumbnailWriter
from workers.decode.frames import Frames
from workers.testing.scenes import StaticScene

SIZE = (112, 64)  # (w, h) of the model's frames


def window(scene: StaticScene, index: int, *, frames: int = 4, shift: float = 0.0) -> Frames:
    """Window ``index`` of 10 s: ``frames`` frames of ``scene`` (RGB), brightened by ``shift`` grey levels."""
    times = [index * 10 + 10 * k / frames for k in range(frames)]
    bgr = [scene(index * 100 + k, t, SIZE) for k, t in enumerate(times)]
    rgb = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in bgr]).astype(np.float32) + shift
    return Frames(np.clip(rgb, 0, 255).astype(np.uint8), times, SIZE, fps=0.4)


def test_identical_frames_differ_by_nothing() -> None:
    frames = window(StaticScene(noise=0.0), 0)
    assert difference(signature(frames.rgb), signature(frames.rgb.copy())) == 0.0
    gate = StaticGate(1.0)
    assert gate.reference(0, frames) is None  # the first window is always scored
    assert gate.reference(1, window(StaticScene(noise=0.0), 1)) == 0


def test_sensor_noise_stays_under_a_typical_threshold_and_a_person_is_far_above_it() -> None:
    scene = StaticScene(active_s=(30.0, 40.0), noise=3.0)
    first = signature(window(scene, 0).rgb)
    noisy = [difference(first, signature(window(scene, i).rgb)) for i in (1, 2, 5)]
    person = difference(first, signature(window(scene, 3).rgb))
    assert all(0.0 < d < 3.0 for d in noisy), noisy  # never bit-identical, yet far under 8
    assert person > 30.0, person
    gate = StaticGate(8.0)
    assert [gate.reference(i, window(scene, i)) for i in range(6)] == [None, 0, 0, None, None, 4]


def test_a_slow_drift_is_measured_against_the_last_scored_window_not_the_previous_one() -> None:
    """Dusk: 2 grey levels darker per window. Each step is under the threshold of 5; the sum is not."""
    scene = StaticScene(noise=0.0)
    gate = StaticGate(5.0)
    got = [gate.reference(i, window(scene, i, shift=-2.0 * i)) for i in range(7)]
    # 0 scored; 1 (-2) and 2 (-4) inherit it; 3 (-6) is 6 from window 0: scored; 4, 5 inherit 3; 6 scored
    assert got == [None, 0, 0, None, 3, 3, None]


def test_the_gate_off_scores_every_window_and_incomparable_windows_are_scored() -> None:
    scene = StaticScene(noise=0.0)
    off = StaticGate(0.0)
    assert [off.reference(i, window(scene, i)) for i in range(3)] == [None, None, None]
    gate = StaticGate(8.0)
    assert gate.reference(0, window(scene, 0, frames=4)) is None
    assert gate.reference(1, window(scene, 1, frames=3)) is None  # a shorter last window
    assert difference(np.zeros((2, 4, 16)), np.zeros((2, 5, 16))) == float("inf")


def test_an_inherited_window_copies_scores_and_evidence_and_gets_its_own_thumbnail(tmp_path: Path) -> None:
    scored = [
        WindowResult(1, 4, 40.0, 50.0, 0.73, True, evidence="a man at the gate", thumbnail_path="/x.jpg"),
        WindowResult(2, 4, 40.0, 50.0, 0.12, False),
    ]
    frames = window(StaticScene(noise=0.0), 5)
    got = inherit(scored, frames, 5, 50.0, 60.0, ThumbnailWriter(tmp_path))
    assert [(r.target_id, r.window_index, r.start_s, r.end_s) for r in got] == [
        (1, 5, 50.0, 60.0),
        (2, 5, 50.0, 60.0),
    ]
    assert [(r.p_yes, r.matched, r.evidence, r.inherited) for r in got] == [
        (0.73, True, "a man at the gate", True),
        (0.12, False, None, True),
    ]
    assert got[0].thumbnail_path == str(tmp_path / "w0005-inherited.jpg") and got[1].thumbnail_path is None
    assert cv2.imread(got[0].thumbnail_path).shape == (64, 112, 3)
    assert not scored[0].inherited and scored[0].window_index == 4  # the scored window is untouched
    assert (
        inherit([scored[1]], frames, 6, 60.0, 70.0, ThumbnailWriter(tmp_path / "none"))[0].thumbnail_path
        is None
    )
    assert not (tmp_path / "none").exists()  # no match, no thumbnail written
