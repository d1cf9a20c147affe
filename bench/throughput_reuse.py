"""Benchmark: what a matched window costs over a missed one, now that evidence and the best frame reuse work.

A 60 s clip (6 windows of 8 frames x 4 targets, tiny LLaVA-NeXT-Video, this CPU) analysed by
``WindowRecognizer.recognize``; its ``model_ms`` after a warm-up, best of --repeats, the configurations
interleaved so that load on the machine hits them alike:
  unmatched            every threshold above 1 (1.01): scores only
  matched, no evidence  every threshold 0: scores + best frame of every target of every window
  matched               the same with evidence on (up to 48 tokens per target)
Then, over the same six windows' frames:
  evidence             ``window_evidence_ids`` from the window's kept encoding (crop back, suffixes, decode)
  generation           the same tokens greedily generated from a cache that already holds the prefix and the
                       evidence questions, batched the same way (``greedy_rows`` alone): the floor
  per-target (before)  ``evidence_token_ids`` per target, each encoding the window again (the old path)
  best frame           one batched pass of one-frame prefixes from the per-frame features the window's
                       scoring kept (what the pipeline runs for this family), the same pass encoding the
                       one-frame videos again (other families), and the old one-frame-at-a-time scoring

Keys of the JSON line: matched_vs_unmatched_no_evidence (goal <= 2.0; 6.5 before), evidence_vs_generation
(goal <= 1.2), matched_vs_unmatched (reported; 25.7 before), evidence_vs_generation_before,
best_frame_speedup (one at a time / batched), best_frame_kept_speedup (batched / kept features).
``--recognize-only`` measures the first three keys alone, so the same file can time
older code (PYTHONPATH=<old checkout>).

    PYTHONPATH=. python bench/throughput_reuse.py [--repeats 7] [--recognize-only]

``--quick`` is a smoke run (a 20 s clip, two windows, one repeat): it proves the script runs, it measures
nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

SECONDS, WINDOW_S, FRAMES, EVIDENCE_TOKENS = 60.0, 10.0, 8, 48
QUICK_SECONDS = 20.0
DESCRIPTIONS = ["a person walking a dog", "a red car", "smoke rising", "a white delivery van at the gate"]


def _setup(cache_dir: Path, seconds: float) -> tuple[Any, Path]:
    from workers.model.loading import load_model
    from workers.testing.clips import write_clip_mp4v
    from workers.testing.models import cached_tiny_model

    loaded = load_model(str(cached_tiny_model("llava_next_video", cache_dir)), device="cpu", dtype="float32")
    clip = write_clip_mp4v(cache_dir / f"reuse-{seconds:g}s.mp4", seconds=seconds, fps=10)
    return loaded, clip


def _recognize_ms(
    loaded: Any, clip: Path, out: Path, *, windows: int, threshold: float, evidence: bool
) -> float:
    from vigil.config.settings import ModelSettings
    from vigil.formats.probe import probe
    from vigil.ops.contracts import TargetSpec
    from workers.analysis.pipeline import WindowRecognizer

    settings = ModelSettings(
        id="tiny",
        frames_per_window=FRAMES,
        window_s=WINDOW_S,
        evidence=evidence,
        # What this bench measures is evidence reusing each matched window's cache, so every matched window
        # gets it (the default writes it once per run of matched windows: workers.analysis.evidence_runs).
        evidence_windows="every_match",
        evidence_max_tokens=EVIDENCE_TOKENS,
    )
    targets = [
        TargetSpec(id=i + 1, name=f"t{i + 1}", description=d, threshold=threshold)
        for i, d in enumerate(DESCRIPTIONS)
    ]
    got = WindowRecognizer(loaded, settings, thumbnails_dir=out).recognize(
        clip, probe(clip), targets, media_id=1
    )
    assert got.windows == windows
    assert all(r.matched == (threshold <= 0) for r in got.results)
    assert all((r.evidence is not None) == (evidence and r.matched) for r in got.results)
    return float(got.model_ms)


def recognize_figures(loaded: Any, clip: Path, out: Path, repeats: int, windows: int) -> dict[str, float]:
    cases = {
        "unmatched": dict(windows=windows, threshold=1.01, evidence=False),
        "matched_no_evidence": dict(windows=windows, threshold=0.0, evidence=False),
        "matched": dict(windows=windows, threshold=0.0, evidence=True),
    }
    for case in cases.values():  # warm-up: first-call costs, reference suffixes, allocator
        _recognize_ms(loaded, clip, out, **case)  # type: ignore[arg-type]
    best = {name: float("inf") for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            best[name] = min(best[name], _recognize_ms(loaded, clip, out, **case))  # type: ignore[arg-type]
    return {
        "unmatched_ms": best["unmatched"],
        "matched_no_evidence_ms": best["matched_no_evidence"],
        "matched_ms": best["matched"],
        "matched_vs_unmatched_no_evidence": best["matched_no_evidence"] / best["unmatched"],
        "matched_vs_unmatched": best["matched"] / best["unmatched"],
    }


def _windows(loaded: Any, clip: Path) -> list[Any]:
    from vigil.formats.probe import probe
    from workers.decode.frames import FrameRequest, open_media, plan_windows

    with open_media(clip, info=probe(clip)) as media:
        spans = plan_windows(media.timed_info, window_s=WINDOW_S, frames_per_window=FRAMES, max_windows=360)
        requests = [FrameRequest(FRAMES, start_s=a, end_s=b, max_side=loaded.frame_side) for a, b in spans]
        return [frames for _, frames in media.frames(requests)]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result


def reuse_figures(loaded: Any, clip: Path, repeats: int) -> dict[str, float]:
    from workers.model.best_frame import ONE_FRAME_FPS, best_frames
    from workers.model.generation import evidence_token_ids, greedy_rows, prefill_rows, window_evidence_ids
    from workers.model.prompts import evidence_question
    from workers.model.scoring import question_suffixes, score_targets, score_window

    refs: list[list[Any]] = [[] for _ in DESCRIPTIONS]
    questions = [evidence_question(d) for d in DESCRIPTIONS]
    windows = _windows(loaded, clip)
    best = {"evidence": float("inf"), "generation": float("inf"), "per_target": float("inf")}
    best |= {"best_kept": float("inf"), "best_batched": float("inf"), "best_one_by_one": float("inf")}
    for _ in range(repeats):
        total = dict.fromkeys(best, 0.0)
        for frames in windows:
            kw = dict(fps=frames.fps, descriptions=DESCRIPTIONS, references=refs)
            window = score_window(loaded, frames.rgb, **kw)  # type: ignore[arg-type]
            t, evidence = _timed(
                lambda w=window: window_evidence_ids(
                    loaded, w, DESCRIPTIONS, refs, max_new_tokens=EVIDENCE_TOKENS
                )
            )
            total["evidence"] += t
            floor = score_window(loaded, frames.rgb, **kw)  # type: ignore[arg-type]
            with torch.inference_mode():
                rows = question_suffixes(loaded, floor.prefix, floor.head, questions, refs)
                logits = prefill_rows(loaded, floor.prefix, rows)  # the questions already in the cache
                began = time.perf_counter()
                generated = greedy_rows(loaded, floor.prefix, rows, logits, max_new_tokens=EVIDENCE_TOKENS)
                t = time.perf_counter() - began
            assert generated == evidence, "the floor must generate the very same tokens"
            total["generation"] += t
            t, _ = _timed(
                lambda f=frames: [
                    evidence_token_ids(
                        loaded, f.rgb, fps=f.fps, description=d, max_new_tokens=EVIDENCE_TOKENS
                    )
                    for d in DESCRIPTIONS
                ]
            )
            total["per_target"] += t
            t, picks = _timed(
                lambda f=frames: best_frames(loaded, f.rgb, descriptions=DESCRIPTIONS, references=refs)
            )
            total["best_batched"] += t
            t, kept_picks = _timed(
                lambda f=frames, w=window: best_frames(
                    loaded,
                    f.rgb,
                    descriptions=DESCRIPTIONS,
                    references=refs,
                    frame_features=w.prefix.frame_features,
                )
            )
            assert window.prefix.frame_features is not None, "LLaVA-NeXT-Video keeps its frames' features"
            assert kept_picks == picks, "the kept features must pick the batched pass's frame"
            total["best_kept"] += t

            def one_by_one(rgb: np.ndarray = frames.rgb) -> list[int]:
                per_frame = [
                    score_targets(loaded, rgb[i : i + 1], fps=ONE_FRAME_FPS, descriptions=DESCRIPTIONS)
                    for i in range(len(rgb))
                ]
                return [int(i) for i in np.array(per_frame).argmax(axis=0)]

            t, old_picks = _timed(one_by_one)
            assert picks == old_picks, "the batched best frame must pick the old method's frame"
            total["best_one_by_one"] += t
        best = {k: min(best[k], total[k]) for k in best}
    return {
        "evidence_ms": best["evidence"] * 1e3,
        "generation_ms": best["generation"] * 1e3,
        "per_target_evidence_ms": best["per_target"] * 1e3,
        "best_frame_kept_ms": best["best_kept"] * 1e3,
        "best_frame_batched_ms": best["best_batched"] * 1e3,
        "best_frame_one_by_one_ms": best["best_one_by_one"] * 1e3,
        "evidence_vs_generation": best["evidence"] / best["generation"],
        "evidence_vs_generation_before": best["per_target"] / best["generation"],
        "best_frame_speedup": best["best_one_by_one"] / best["best_batched"],
        "best_frame_kept_speedup": best["best_batched"] / best["best_kept"],
    }


def measure(
    repeats: int = 7,
    *,
    recognize_only: bool = False,
    cache_dir: Path | None = None,
    threads: int = 1,
    seconds: float = SECONDS,
) -> dict[str, float]:
    """The figures, measured in one run on this machine (ratios are what to compare between machines).
    One torch thread by default: on a shared, loaded CPU intra-op threads spin against each other and
    the timings swing by tens of times."""
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    torch.manual_seed(0)
    folder = cache_dir or Path(tempfile.gettempdir()) / "vigil-tiny-models"
    folder.mkdir(parents=True, exist_ok=True)
    loaded, clip = _setup(folder, seconds)
    with tempfile.TemporaryDirectory() as out:
        figures = recognize_figures(loaded, clip, Path(out), repeats, round(seconds / WINDOW_S))
    if not recognize_only:
        figures |= reuse_figures(loaded, clip, repeats)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--recognize-only", action="store_true", help="only the recognize ratios")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: a 20 s clip, 1 repeat (no figures)")
    args = parser.parse_args()
    seconds = QUICK_SECONDS if args.quick else SECONDS
    f = measure(
        1 if args.quick else args.repeats,
        recognize_only=args.recognize_only,
        cache_dir=args.cache_dir,
        threads=args.threads,
        seconds=seconds,
    )
    ratio = "matched_vs_unmatched_no_evidence"
    print(
        f"{seconds:g} s clip, {round(seconds / WINDOW_S)} windows x {len(DESCRIPTIONS)} targets, model time:"
    )
    print(f"  unmatched             {f['unmatched_ms']:>9.0f} ms")
    print(f"  matched, no evidence  {f['matched_no_evidence_ms']:>9.0f} ms  x{f[ratio]:.2f}")
    print(f"  matched, evidence     {f['matched_ms']:>9.0f} ms  x{f['matched_vs_unmatched']:.2f}")
    if "evidence_ms" in f:
        print(f"the {round(seconds / WINDOW_S)} windows' evidence (4 targets each) and best frames:")
        print(
            f"  evidence (kept encoding, batched)  {f['evidence_ms']:>9.0f} ms  "
            f"x{f['evidence_vs_generation']:.2f}"
        )
        print(f"  generation floor (same tokens)     {f['generation_ms']:>9.0f} ms")
        print(
            f"  per-target re-encoding (before)    {f['per_target_evidence_ms']:>9.0f} ms  "
            f"x{f['evidence_vs_generation_before']:.2f}"
        )
        print(f"  best frame, kept frame features    {f['best_frame_kept_ms']:>9.0f} ms")
        print(
            f"  best frame, batched one-frame pass {f['best_frame_batched_ms']:>9.0f} ms  "
            f"(kept is x{f['best_frame_kept_speedup']:.2f} faster)"
        )
        print(
            f"  best frame, one frame at a time    {f['best_frame_one_by_one_ms']:>9.0f} ms  "
            f"(batched is x{f['best_frame_speedup']:.2f} faster)"
        )
    print(
        json.dumps(
            {"bench": "throughput_reuse", "quick": args.quick} | {k: round(v, 4) for k, v in f.items()}
        )
    )


if __name__ == "__main__":
    main()
