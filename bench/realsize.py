"""The default model family at its published sizes on this machine: where a window's time goes, and how
much footage one process keeps up with (issue 27).

SmolVLM2-256M, -500M (Vigil's default) and -2.2B built from their published configurations (written out
in ``bench/realsize_models.py``: nothing can be downloaded here) with random weights, fed by the real decode
path (``workers.decode.frames``, frames decoded in line) on a camera-like 1280x720 H.264 clip written with
PyAV/libx264 (``write_camera_clip``: a still textured scene, a moving box, scene cuts), windows of 10 s with
8 frames. Per window, each phase timed on its own and its FLOPs counted (``torch.utils.flop_counter``):

- ``decode``: the window's frames out of the decoder (the worker overlaps this with the model; counted
  serially here);
- ``vision``: the vision tower and connector (forward hooks); ``prefill``: the language model over the
  video prefix; ``processor``: the rest of ``score_window`` before the questions (pixels, tokens);
- ``suffix1`` / ``suffix8``: the target questions over the kept prefix, 1 and 8 targets;
- ``evidence1`` / ``evidence8``: ``window_evidence`` for 1 and 8 matched targets (at most the worker's
  ``evidence_max_tokens``, 48; random weights rarely stop earlier);
- ``best1`` / ``best8``: ``best_frames`` for 1 and 8 matched targets from the window's kept per-frame
  features, and ``best8_reencode`` the same encoding every frame again (the path before the reuse).

``footage_per_s``: seconds of footage per second of analysis for one window, nothing matched (decode, the
score pass) and all matched (+ evidence and best frame for every target), for 1 and 8 targets;
``footage_per_cpu_s`` the same per CPU second of the process (all its threads): on a shared machine wall
time depends on the neighbours, CPU time much less (``loadavg`` says how shared it was), and N cores at
full use give at most N times it.
``gemm_gflops``: a 2048² fp32 matrix product in the same process, the better of one before and one after
the windows (the machine's practical ceiling), beside each phase's achieved GFLOPS (counted by
``bench/flops.py``, attention included), both also per CPU second (one core's rate). The first window is a
warm-up whose FLOPs are counted (counting slows small ops; evidence, many small ops, is not counted); later
windows are timed without the counter and averaged (``--windows 1``: the counted window is the timed one).
Each model runs in its own process (peak RSS is that process's), on the CPU and, when CUDA is present, on
the GPU (bf16).

    PYTHONPATH=. python bench/realsize.py [--models 256m,500m,2.2b] [--precision fp32,int8] [--windows 2]
    PYTHONPATH=. python bench/realsize.py --quick     # a tiny model, fp32 and int8 (make test's smoke run)

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import realsize_models as sizes
from flops import counter as flops_counter
from machine import Neighbours, cpu

from vigil.config.settings import ModelSettings

WINDOW_S, FRAMES, CLIP_SIZE, FPS = 10.0, 8, (1280, 720), 25
TARGETS = 8
DESCRIPTIONS = [
    f"a person carrying a {c} bag"
    for c in ("red", "blue", "green", "black", "white", "brown", "grey", "pink")
]


def gemm_gflops(device: str, dtype: Any, n: int = 2048, repeat: int = 5) -> tuple[float, float]:
    """The best of ``repeat`` n x n matrix products: GFLOPS per wall second and per CPU second of this
    process (all its threads: on a CPU, the rate of one core)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    wall, cpu = float("inf"), float("inf")
    for _ in range(repeat + 1):
        _sync(device)
        wall0, cpu0 = _clock()
        torch.mm(a, b)
        _sync(device)
        w, c = _clock()
        wall, cpu = min(wall, w - wall0), min(cpu, c - cpu0)
    return 2 * n**3 / wall / 1e9, 2 * n**3 / max(cpu, 1e-9) / 1e9


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _clock() -> tuple[float, float]:
    """(wall, this process's CPU) seconds."""
    return time.perf_counter(), time.process_time()


class Hooks:
    """Time spent inside the vision tower (and connector) and inside the language model: wall and CPU ms."""

    def __init__(self, loaded: Any, device: str) -> None:
        inner = loaded.model.model
        self.device = device
        self.reset()
        self._began: dict[str, tuple[float, float]] = {}
        for name, module in (
            ("vision", inner.vision_model),
            ("vision", inner.connector),
            ("text", inner.text_model),
        ):
            module.register_forward_pre_hook(self._enter(name))
            module.register_forward_hook(self._leave(name))

    def _enter(self, name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            _sync(self.device)
            self._began[name] = _clock()

        return hook

    def _leave(self, name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            _sync(self.device)
            (wall, cpu), (wall0, cpu0) = _clock(), self._began.pop(name)
            spent = ((wall - wall0) * 1000, (cpu - cpu0) * 1000)
            self.spent[name] = (self.spent[name][0] + spent[0], self.spent[name][1] + spent[1])
            if name == "text":
                self.calls.append(spent)

        return hook

    def reset(self) -> None:
        self.spent = {"vision": (0.0, 0.0), "text": (0.0, 0.0)}
        self.calls: list[tuple[float, float]] = []  # each language-model call's (wall, CPU) ms, in order


class Phases:
    """Wall ms, CPU ms and FLOPs per phase of one window (FLOPs only while ``counting``)."""

    def __init__(self, device: str, *, counting: bool) -> None:
        self.device, self.counting = device, counting
        self.ms: dict[str, float] = {}
        self.cpu_ms: dict[str, float] = {}
        self.flops: dict[str, int] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        # evidence is many small ops, where the counter's own cost would show: its FLOPs are not counted
        counting = self.counting and not name.startswith("evidence")
        counter = flops_counter() if counting else None
        _sync(self.device)
        wall0, cpu0 = _clock()
        if counter is not None:
            with counter:
                out = fn()
        else:
            out = fn()
        _sync(self.device)
        wall, cpu = _clock()
        self.ms[name], self.cpu_ms[name] = (wall - wall0) * 1000, (cpu - cpu0) * 1000
        if counter is not None:
            self.flops[name] = int(counter.get_total_flops())
            self.flops.update(_module_flops(name, counter))
        return out


def _module_flops(phase: str, counter: Any) -> dict[str, int]:
    """The vision tower's and connector's share of a phase's FLOPs (the rest is the language model): under
    the model's forward, or at the top where the scoring pass runs them itself to keep their features."""
    names = ("SmolVLMVisionTransformer", "SmolVLMConnector")
    suffixes = (".model.vision_model", ".model.connector")
    counts = counter.get_flop_counts()
    vision = sum(sum(v.values()) for k, v in counts.items() if k in names or k.endswith(suffixes))
    return {f"{phase}.vision": int(vision)} if vision else {}


def _window(
    loaded: Any, frames: Any, hooks: Hooks, phases: Phases, *, reencode: bool, tokens: int
) -> dict[str, float]:
    import torch

    from workers.model.best_frame import best_frames
    from workers.model.generation import rows_at_prefix, window_evidence
    from workers.model.scoring import forward_suffixes, p_yes, score_window, suffix_ids
    from workers.model.suffixes import Suffix

    hooks.reset()
    window = phases.run(
        "score8", lambda: score_window(loaded, frames.rgb, fps=frames.fps, descriptions=DESCRIPTIONS)
    )
    parts: dict[str, tuple[float, float]] = {}
    for i, clock in ((0, "ms"), (1, "cpu_ms")):
        vision, calls = hooks.spent["vision"][i], [c[i] for c in hooks.calls]
        parts[f"vision.{clock}"] = vision
        parts[f"prefill.{clock}"] = calls[0]
        parts[f"suffix8.{clock}"] = sum(calls[1:])
        parts[f"processor.{clock}"] = getattr(phases, clock)["score8"] - vision - sum(calls)

    def one_suffix() -> list[float]:
        with torch.inference_mode():
            rows_at_prefix(loaded, window.prefix, 1)
            tail = loaded.adapter.question_parts(f"Is there {DESCRIPTIONS[0]}?")[1]
            row = Suffix.text(suffix_ids(loaded, window.prefix, [tail])[0])
            return p_yes(loaded, forward_suffixes(loaded, window.prefix, [row]))

    phases.run("suffix1", one_suffix)
    for k in (1, TARGETS):
        phases.run(
            f"evidence{k}",
            lambda k=k: window_evidence(loaded, window, DESCRIPTIONS[:k], [[]] * k, max_new_tokens=tokens),
        )
    kept = window.prefix.frame_features
    for k in (1, TARGETS):
        phases.run(
            f"best{k}",
            lambda k=k: best_frames(
                loaded, frames.rgb, descriptions=DESCRIPTIONS[:k], references=[[]] * k, frame_features=kept
            ),
        )
    parts["p_yes"] = window.scores  # type: ignore[assignment]
    if reencode:
        phases.run(
            "best8_reencode",
            lambda: best_frames(loaded, frames.rgb, descriptions=DESCRIPTIONS, references=[[]] * TARGETS),
        )
    return parts


def decoded_windows(clip: Path, loaded: Any, windows: int) -> Iterator[tuple[tuple[float, float], Any]]:
    """Each window's decode (wall, CPU) ms and frames, from the worker's decode path, decoded in line."""
    from vigil.formats.probe import probe
    from workers.analysis.thumbnails import THUMBNAIL_MAX_SIDE
    from workers.decode.frames import analysis_requests, open_media, plan_windows

    with open_media(clip, info=probe(clip)) as media:
        spans = plan_windows(media.timed_info, window_s=WINDOW_S, frames_per_window=FRAMES)[:windows]
        requests = analysis_requests(
            spans,
            FRAMES,
            mode="exact",
            max_side=loaded.frame_side,
            full_side=THUMBNAIL_MAX_SIDE,
            caption=False,
        )
        stream = media.frames(requests)
        for _ in spans:
            wall0, cpu0 = _clock()
            _, frames = next(stream)
            wall, cpu = _clock()
            yield ((wall - wall0) * 1000, (cpu - cpu0) * 1000), frames


def measure(
    size: str, precision: str, device: str, clip: Path, *, windows: int, reencode: bool, tokens: int
) -> dict[str, Any]:
    """One model at one precision on one device, in this process."""
    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    gemm_before = gemm_gflops(device, dtype)
    began = time.perf_counter()
    loaded = sizes.loaded(size, device=device, precision="float" if precision == "fp32" else precision)
    load_s = time.perf_counter() - began
    hooks = Hooks(loaded, device)
    timed: list[dict[str, float]] = []
    flops: dict[str, int] = {}
    with Neighbours() as seen:
        for i, (decode, frames) in enumerate(decoded_windows(clip, loaded, windows)):
            phases = Phases(device, counting=i == 0)
            parts = _window(loaded, frames, hooks, phases, reencode=reencode, tokens=tokens)
            p_yes = parts.pop("p_yes")
            if i == 0:
                flops = phases.flops
            if i > 0 or windows == 1:
                row = {"decode.ms": decode[0], "decode.cpu_ms": decode[1], **parts}
                row |= {f"{k}.ms": v for k, v in phases.ms.items()}
                row |= {f"{k}.cpu_ms": v for k, v in phases.cpu_ms.items()}
                timed.append(row)
    mean = {k: sum(w[k] for w in timed) / len(timed) for k in timed[0]}
    ms = {k[:-3]: v for k, v in mean.items() if k.endswith(".ms")}
    cpu_ms = {k[:-7]: v for k, v in mean.items() if k.endswith(".cpu_ms")}
    # the ceiling: the better of a GEMM before and after the model's work (one alone moved 142-184 GFLOPS
    # between two processes of one quiet run), so a slow first measurement cannot flatter the model's share
    gemm_after = gemm_gflops(device, dtype)
    gemm = (max(gemm_before[0], gemm_after[0]), max(gemm_before[1], gemm_after[1]))
    row = _summary(ms, cpu_ms, flops, gemm)
    row["gemm_gflops_before_after"] = [round(gemm_before[0], 1), round(gemm_after[0], 1)]
    return {
        "model": size,
        "precision": precision,
        "device": device if not device.startswith("cuda") else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(),
        "params_m": round(sum(p.numel() for p in loaded.model.parameters()) / 1e6, 1),
        "load_s": round(load_s, 1),
        "frames": list(frames.rgb.shape),
        "windows_timed": len(timed),
        "p_yes": [round(p, 6) for p in p_yes],  # the last window's 8 targets
        **row,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "neighbours": seen.report(),
        "cpu": cpu(),
    }


def _footage(ms: dict[str, float]) -> dict[str, float]:
    """Footage seconds per analysis second (or per CPU second, from CPU ms)."""
    score8 = ms["decode"] + ms["score8"]
    score1 = score8 - ms["suffix8"] + ms["suffix1"]
    return {
        "unmatched_1": round(WINDOW_S * 1000 / score1, 3),
        "unmatched_8": round(WINDOW_S * 1000 / score8, 3),
        "matched_1": round(WINDOW_S * 1000 / (score1 + ms["evidence1"] + ms["best1"]), 3),
        "matched_8": round(WINDOW_S * 1000 / (score8 + ms["evidence8"] + ms["best8"]), 3),
    }


def _summary(
    ms: dict[str, float], cpu_ms: dict[str, float], flops: dict[str, int], gemm: tuple[float, float]
) -> dict[str, Any]:
    vision_flops = flops.get("score8.vision", 0)
    text_flops = flops.get("score8", 0) - vision_flops
    rates = {}
    for clock, spent in (("", ms), ("_per_cpu_s", cpu_ms)):
        rates[f"vision{clock}"] = round(vision_flops / spent["vision"] / 1e6, 1)
        rates[f"score8_text{clock}"] = round(text_flops / (spent["prefill"] + spent["suffix8"]) / 1e6, 1)
    return {
        "ms": {k: round(v, 1) for k, v in ms.items()},
        "cpu_ms": {k: round(v, 1) for k, v in cpu_ms.items()},
        "gflop": {k: round(v / 1e9, 2) for k, v in flops.items()},
        "gflops": rates,
        "gemm_gflops": round(gemm[0], 1),
        "gemm_gflops_per_cpu_s": round(gemm[1], 1),
        "vision_share_of_gemm": round(rates["vision"] / gemm[0], 3) if gemm[0] else None,
        "vision_share_of_gemm_per_cpu_s": round(rates["vision_per_cpu_s"] / gemm[1], 3) if gemm[1] else None,
        "footage_per_s": _footage(ms),
        "footage_per_cpu_s": _footage(cpu_ms),
    }


def _child(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    row = measure(
        args.one,
        args.precision,
        args.device,
        Path(args.clip),
        windows=args.windows,
        reencode=not args.no_reencode,
        tokens=args.evidence_tokens,
    )
    print(json.dumps(row), flush=True)
    return 0


def _parent(args: argparse.Namespace) -> int:
    import torch

    from workers.testing.clips import write_camera_clip

    began = time.perf_counter()
    models = ["tiny"] if args.quick else args.models.split(",")
    windows = 1 if args.quick else args.windows
    args.evidence_tokens = 4 if args.quick else args.evidence_tokens
    size = (160, 96) if args.quick else CLIP_SIZE
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vigil-realsize-") as tmp:
        clip = write_camera_clip(
            Path(tmp) / "camera.mp4", seconds=WINDOW_S * windows, fps=FPS, size=size, gop_s=4.0, cut_s=60.0
        )
        for device in devices:
            for model in models:
                for precision in ["fp32", "int8"] if args.quick else args.precision.split(","):
                    if device != "cpu" and precision != "fp32":
                        continue  # int8 dynamic quantization is a CPU path
                    rows.append(_run_child(args, model, precision, device, clip, windows))
    _fp32_equivalent_rates(rows)
    summary = {"rows": rows, "total_s": round(time.perf_counter() - began, 1)}
    print(json.dumps(summary))
    return 0 if all("error" not in r for r in rows) else 1


def _fp32_equivalent_rates(rows: list[dict[str, Any]]) -> None:
    """The counter sees no FLOPs in quantized Linear layers: an int8 row's rates are the fp32 row's FLOPs
    (same model, same shapes) over the int8 row's time, as ``gflops_fp32_equiv``; ``p_yes_int8_vs_fp32``
    the largest difference of the last window's P(yes) (the same random weights, seeded, and frames)."""
    fp32 = {(r["model"], r["device"]): r for r in rows if r.get("precision") == "fp32" and "error" not in r}
    for row in rows:
        ref = fp32.get((row["model"], row["device"]))
        if row.get("precision") == "fp32" or "error" in row or ref is None:
            continue
        flop = ref["gflop"]
        vision, text = flop.get("score8.vision", 0), flop["score8"] - flop.get("score8.vision", 0)
        pairs = zip(row["p_yes"], ref["p_yes"], strict=True)
        row["p_yes_int8_vs_fp32"] = round(max(abs(a - b) for a, b in pairs), 6)
        row["gflops_fp32_equiv"] = {
            f"{name}{suffix}": round(f * 1000 / t, 1)
            for suffix, ms in (("", row["ms"]), ("_per_cpu_s", row["cpu_ms"]))
            for name, f, t in (
                ("vision", vision, ms["vision"]),
                ("score8_text", text, ms["prefill"] + ms["suffix8"]),
            )
        }


def _run_child(
    args: argparse.Namespace, model: str, precision: str, device: str, clip: Path, windows: int
) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", model, "--precision", precision, "--device", device]
    command += [
        "--clip",
        str(clip),
        "--windows",
        str(windows),
        "--evidence-tokens",
        str(args.evidence_tokens),
    ]
    command += ["--threads", str(args.threads)] if args.threads else []
    command += ["--no-reencode"] if args.no_reencode else []
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        row: dict[str, Any] = {"model": model, "precision": precision, "device": device, "error": reason}
    else:
        row = json.loads(done.stdout.strip().splitlines()[-1])
    print(_line(row), file=sys.stderr, flush=True)
    return row


def _line(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['model']} {row['precision']} {row['device']}: failed: {row['error']}"
    ms, cpu, foot, per_cpu = row["ms"], row["cpu_ms"], row["footage_per_s"], row["footage_per_cpu_s"]
    rates = row["gflops"]
    return (
        f"{row['model']} {row['precision']} {row['device']} x{row['threads']} (load {row['loadavg'][0]}): "
        f"wall/CPU ms: vision {ms['vision']:.0f}/{cpu['vision']:.0f} "
        f"({rates['vision']:.0f} GFLOPS, {rates['vision_per_cpu_s']:.0f} per CPU s; "
        f"GEMM {row['gemm_gflops']:.0f}, {row['gemm_gflops_per_cpu_s']:.0f} per CPU s), "
        f"prefill {ms['prefill']:.0f}/{cpu['prefill']:.0f}, "
        f"suffix8 {ms['suffix8']:.0f}/{cpu['suffix8']:.0f}, "
        f"evidence8 {ms['evidence8']:.0f}/{cpu['evidence8']:.0f}, "
        f"best8 {ms['best8']:.0f}/{cpu['best8']:.0f}; "
        f"footage per s unmatched8 {foot['unmatched_8']:.3f} matched8 {foot['matched_8']:.3f}, "
        f"per CPU s {per_cpu['unmatched_8']:.3f} / {per_cpu['matched_8']:.3f}; "
        f"RSS {row['peak_rss_mib']:.0f} MiB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model on a small clip: seconds")
    parser.add_argument("--models", default="500m", help=f"any of {','.join(sizes.SIZES)}")
    parser.add_argument("--precision", default="fp32", help="fp32, int8 or both (fp32,int8)")
    parser.add_argument("--windows", type=int, default=2, help="the first is a warm-up (FLOPs counted)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-reencode", action="store_true", help="skip timing best8 without the reuse")
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument(
        "--evidence-tokens",
        type=int,
        default=ModelSettings().evidence_max_tokens,
        help="the worker's default",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--clip", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return _child(args) if args.one else _parent(args)


if __name__ == "__main__":
    sys.exit(main())
