"""Which runtime should run Vigil's reduced-precision CPU path: PyTorch, ONNX Runtime or OpenVINO, each in
fp32 and int8, on the two parts that dominate a window (issue 27).

SmolVLM2-500M at its published dimensions with random weights, seeded (``bench/realsize_models.py``), one
window of 8 frames of a camera-like 1280x720 H.264 clip decoded by the worker's decode path. One scoring
pass (``score_window``) runs on the float model and hooks keep the exact tensors it gives

- ``vision``: the vision tower and connector (``pixel_values`` and ``patch_attention_mask`` of the 8
  frames as the real processor made them), and
- ``prefill``: the language model over the video prefix (``inputs_embeds``, ~600 tokens), returning the
  last token's hidden state; the float output head turns it into logits outside the timing.

Each part runs on every backend of ``bench/cpu_backends_runners.py`` (torch fp32 through ATen and through
oneDNN as the worker runs it, the worker's int8, ONNX Runtime fp32 and int8, OpenVINO fp32 and int8), all with
the same thread count, in one process, interleaved (A B C D E F A B C ...) after one warm-up round: per
backend the median wall ms and the median CPU ms of the process (all its threads: on a shared machine wall
time depends on the neighbours, CPU time much less), their ratio to torch fp32, GFLOPS (torch fp32's counted
FLOPs over the backend's time), and the agreement with torch fp32 (ATen): the largest absolute difference of
the vision features or of the last-token logits, and of P(yes) (the worker's ``p_yes`` over the logits). A
2048² fp32 GEMM before and after, in the same process, is the machine's practical ceiling. A backend that
fails to export, quantize or run is reported with its error and the others still run; the exit status is then
1.

    PYTHONPATH=. python bench/cpu_backends.py [--size 500m] [--threads 2] [--repeats 3]
    PYTHONPATH=. python bench/cpu_backends.py --quick     # a tiny model, every backend (make bench-smoke)

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cpu_backends_runners as backends
import numpy as np
import realsize
import realsize_models as sizes
import torch
from flops import counter as flops_counter
from machine import Neighbours, cpu

DESCRIPTION = "a person carrying a red bag"
# An exported fp32 part computes what torch does, in another order: more than this (of the output's
# largest magnitude) means the export changed the computation.
FP32_REL_TOLERANCE = 1e-3


def captured_inputs(loaded: Any, frames: Any) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The tensors one scoring pass gives the vision tower and the language model's first (prefill) call."""
    from workers.model.scoring import score_window

    inner, seen = loaded.model.model, {}

    def keep(name: str) -> Any:
        def hook(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
            seen.setdefault(name, dict(kwargs))

        return hook

    handles = [
        inner.vision_model.register_forward_pre_hook(keep("vision"), with_kwargs=True),
        inner.text_model.register_forward_pre_hook(keep("prefill"), with_kwargs=True),
    ]
    try:
        score_window(loaded, frames.rgb, fps=frames.fps, descriptions=[DESCRIPTION])
    finally:
        for handle in handles:
            handle.remove()
    vision, prefill = seen["vision"], seen["prefill"]
    mask = prefill.get("attention_mask")
    if isinstance(mask, torch.Tensor) and not bool(mask.all()):  # the part runs without a mask
        raise RuntimeError("the prefill's attention mask is not all ones")
    # clones made outside inference mode, so that the exporter may trace through them
    return (
        {k: vision[k].clone() for k in ("pixel_values", "patch_attention_mask")},
        {"inputs_embeds": prefill["inputs_embeds"].clone()},
    )


def runners_for(
    name: str,
    parts: tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module],
    inputs: dict[str, torch.Tensor],
    tmp: Path,
    threads: int,
) -> tuple[dict[str, backends.Runner], dict[str, dict[str, Any]]]:
    """Every backend's runner for one part (torch modules: fp32 ATen, fp32 oneDNN, int8), and per backend
    what making it took or why it failed."""
    arrays = {k: v.numpy() for k, v in inputs.items()}
    pairs = zip(backends.TORCH, parts, strict=True)
    runners: dict[str, backends.Runner] = {b: backends.torch_runner(part, inputs) for b, part in pairs}
    notes: dict[str, dict[str, Any]] = {b: {} for b in backends.BACKENDS}
    fp32, int8 = tmp / f"{name}.onnx", tmp / f"{name}.int8.onnx"
    try:
        exported = backends.export_onnx(parts[0], inputs, fp32)
    except Exception as exc:  # any exporter failure is a finding, reported as such
        for backend in backends.EXPORTED:
            notes[backend]["error"] = f"torch.onnx.export: {type(exc).__name__}: {_first_line(exc)}"
        return runners, notes
    for backend, make in (
        ("onnxruntime fp32", lambda: _ort(fp32, arrays, threads, None)),
        ("onnxruntime int8", lambda: _ort(fp32, arrays, threads, int8)),
        ("openvino fp32", lambda: _ov(fp32, arrays, threads, int8=False)),
        ("openvino int8", lambda: _ov(fp32, arrays, threads, int8=True)),
    ):
        try:
            runners[backend], notes[backend] = make()
        except Exception as exc:  # a backend that fails is reported; the others still run
            notes[backend]["error"] = f"{type(exc).__name__}: {_first_line(exc)}"
        notes[backend]["export_s"] = round(exported, 1)
    return runners, notes


def _ort(
    fp32: Path, arrays: dict[str, np.ndarray], threads: int, int8: Path | None
) -> tuple[Any, dict[str, Any]]:
    note: dict[str, Any] = {"onnx_mib": round(_mib(fp32), 1)}
    if int8 is not None:
        took, integer = backends.onnxruntime_int8(fp32, int8)
        note |= {"quantize_s": round(took, 1), "integer_nodes": integer, "onnx_mib": round(_mib(int8), 1)}
    return backends.onnxruntime_runner(int8 or fp32, arrays, threads), note


def _ov(fp32: Path, arrays: dict[str, np.ndarray], threads: int, *, int8: bool) -> tuple[Any, dict[str, Any]]:
    model, note = backends.openvino_model(fp32, int8=int8)
    run, chosen = backends.openvino_runner(model, arrays, threads)
    return run, note | chosen


def _mib(onnx_file: Path) -> float:
    """An exported model's size: the .onnx file and the weights files beside it."""
    return sum(p.stat().st_size for p in onnx_file.parent.glob(onnx_file.name + "*")) / 2**20


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def interleaved(
    runners: dict[str, backends.Runner], repeats: int
) -> tuple[dict[str, Any], dict[str, np.ndarray], int]:
    """Each runner ``repeats`` times in turn after one warm-up round (torch fp32's warm-up counts its
    FLOPs): per runner its wall and CPU ms, the last output, and torch fp32's FLOPs."""
    times: dict[str, dict[str, list[float]]] = {b: {"ms": [], "cpu_ms": []} for b in runners}
    outputs: dict[str, np.ndarray] = {}
    flops = 0
    for round_ in range(repeats + 1):
        for backend, run in runners.items():
            counter = flops_counter() if round_ == 0 and backend == "torch fp32" else None
            wall0, cpu0 = time.perf_counter(), time.process_time()
            if counter is not None:
                with counter:
                    outputs[backend] = run()
                flops = int(counter.get_total_flops())
            else:
                outputs[backend] = run()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            if round_:
                times[backend]["ms"].append(wall * 1000)
                times[backend]["cpu_ms"].append(cpu * 1000)
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"  round {round_} {backend}: {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss:.0f} MiB",
                file=sys.stderr,
            )
    return times, outputs, flops


def summarised(
    times: dict[str, Any], outputs: dict[str, np.ndarray], flops: int, agreement: Any
) -> dict[str, dict[str, Any]]:
    """Per backend: medians, ratios to torch fp32, GFLOPS (torch fp32's FLOPs), agreement with it."""
    base = {k: statistics.median(times["torch fp32"][k]) for k in ("ms", "cpu_ms")}
    rows = {}
    for backend, spent in times.items():
        ms, cpu_ms = statistics.median(spent["ms"]), statistics.median(spent["cpu_ms"])
        rows[backend] = {
            "ms": round(ms, 1),
            "cpu_ms": round(cpu_ms, 1),
            "ms_all": [round(x) for x in spent["ms"]],
            "speedup": round(base["ms"] / ms, 2),
            "speedup_cpu": round(base["cpu_ms"] / cpu_ms, 2),
            "gflops": round(flops / ms / 1e6, 1),
            "gflops_per_cpu_s": round(flops / cpu_ms / 1e6, 1),
            **agreement(outputs["torch fp32"], outputs[backend]),
        }
    return rows


def vision_agreement(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
    diff, scale = float(np.abs(out - ref).max()), float(np.abs(ref).max())
    return {"max_abs_diff": diff, "ref_max_abs": scale, "rel_diff": diff / scale}


def prefill_agreement(loaded: Any) -> Any:
    """The last-token logits through the float output head, and P(yes) (the worker's ``p_yes``)."""
    from workers.model.scoring import p_yes

    def logits(hidden: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return loaded.model.lm_head(torch.from_numpy(hidden)).float()

    def agreement(ref: np.ndarray, out: np.ndarray) -> dict[str, float]:
        a, b = logits(ref), logits(out)
        diff = float((a - b).abs().max())
        return {
            "logits_max_abs_diff": diff,
            "rel_diff": diff / float(a.abs().max()),
            "p_yes": round(p_yes(loaded, b)[0], 6),
            "p_yes_abs_diff": float(abs(p_yes(loaded, a)[0] - p_yes(loaded, b)[0])),
        }

    return agreement


def measure(args: argparse.Namespace, clip: Path, tmp: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    loaded = sizes.loaded(args.size)
    _, frames = next(realsize.decoded_windows(clip, loaded, 1))
    vision_in, prefill_in = captured_inputs(loaded, frames)
    quantized, aten = backends.int8_copy(loaded.model), backends.aten_copy(loaded.model)
    inners = (aten.model, loaded.model.model, quantized.model)
    parts: dict[str, Any] = {}
    for name, make, inputs, agreement in (
        ("vision", backends.VisionPart, vision_in, vision_agreement),
        ("prefill", backends.PrefillPart, prefill_in, prefill_agreement(loaded)),
    ):
        torch_parts = tuple(make(inner).eval() for inner in inners)
        runners, notes = runners_for(name, torch_parts, inputs, tmp, args.threads)
        times, outputs, flops = interleaved(runners, args.repeats)
        rows = summarised(times, outputs, flops, agreement)
        for backend in ("onnxruntime fp32", "openvino fp32"):
            if rows.get(backend, {}).get("rel_diff", 0.0) > FP32_REL_TOLERANCE:
                notes[backend]["error"] = (
                    f"disagrees with torch fp32: {rows[backend]['rel_diff']:.2g} relative"
                )
        parts[name] = {
            "inputs": {k: list(v.shape) for k, v in inputs.items()},
            "gflop": round(flops / 1e9, 2),
            "backends": {b: rows.get(b, {}) | notes[b] for b in backends.BACKENDS},
        }
        print(_lines(name, parts[name]), file=sys.stderr, flush=True)
        del runners, outputs
        gc.collect()
    return parts


def _lines(name: str, part: dict[str, Any]) -> str:
    out = [f"{name} {part['inputs']} ({part['gflop']} GFLOP):"]
    for backend, row in part["backends"].items():
        if "error" in row:
            out.append(f"  {backend:18} failed: {row['error']}")
            continue
        agree = row.get("max_abs_diff", row.get("logits_max_abs_diff"))
        out.append(
            f"  {backend:18} {row['ms']:9.0f} ms {row['cpu_ms']:9.0f} CPU ms  x{row['speedup']:.2f} "
            f"(CPU x{row['speedup_cpu']:.2f})  {row['gflops']:6.1f} GFLOPS  max diff {agree:.3g}"
            + (f"  dP(yes) {row['p_yes_abs_diff']:.4f}" if "p_yes_abs_diff" in row else "")
        )
    return "\n".join(out)


def _versions() -> dict[str, str]:
    found = {"torch": torch.__version__}
    for module in ("onnxruntime", "openvino", "nncf", "onnx", "onnxscript"):
        try:
            found[module] = __import__(module).__version__
        except ImportError as exc:
            found[module] = f"not installed ({exc})"
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model on a small clip, every backend")
    parser.add_argument("--size", default="500m", help=f"any of {','.join(sizes.SIZES)}")
    parser.add_argument("--threads", type=int, default=2, help="threads of every backend")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up round")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.repeats = "tiny", 1
    torch.set_num_threads(args.threads)
    began, load_before = time.perf_counter(), os.getloadavg()
    gemm_before = realsize.gemm_gflops("cpu", torch.float32)
    from workers.testing.clips import write_camera_clip

    size = (160, 96) if args.quick else realsize.CLIP_SIZE
    with tempfile.TemporaryDirectory(prefix="vigil-cpu-backends-") as tmp, Neighbours() as seen:
        clip = write_camera_clip(
            Path(tmp) / "camera.mp4", seconds=realsize.WINDOW_S, fps=realsize.FPS, size=size, gop_s=4.0
        )
        parts = measure(args, clip, Path(tmp))
    gemm_after = realsize.gemm_gflops("cpu", torch.float32)
    failed = [
        f"{p} {b}" for p, part in parts.items() for b, row in part["backends"].items() if "error" in row
    ]
    summary = {
        "model": args.size,
        "threads": args.threads,
        "repeats": args.repeats,
        "versions": _versions(),
        "gemm_gflops": [round(gemm_before[0], 1), round(gemm_after[0], 1)],
        "gemm_gflops_per_cpu_s": [round(gemm_before[1], 1), round(gemm_after[1], 1)],
        "loadavg": [[round(x, 2) for x in load_before], [round(x, 2) for x in os.getloadavg()]],
        "neighbours": seen.report(),
        "cpu": cpu(),
        "parts": parts,
        "failed": failed,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "total_s": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(summary))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
