"""The backends that bench/cpu_backends.py compares, each as a runner: a function of no arguments that runs
one part of the model on its fixed inputs and returns the output as a float32 array.

- ``torch fp32``: the part with ``nn.Linear``'s own kernel (ATen: ``addmm``, the baseline, and what is
  exported); ``torch fp32 onednn``: the part as the worker runs float32 on a CPU, its Linear layers through
  oneDNN (``workers.model.cpu_kernels``); ``torch int8``: the part of a copy quantized by the worker's own
  ``workers.model.precision.apply_precision`` (dynamic int8 Linear layers through FBGEMM).
- ``onnxruntime fp32``: the part exported by ``torch.onnx.export`` (the dynamo exporter), run by ONNX
  Runtime's CPU provider; ``onnxruntime int8``: that file through ``onnxruntime.quantization.
  quantize_dynamic`` (int8 weights of the MatMul/Gemm nodes, per tensor, activations quantized per call:
  the same scheme as PyTorch's).
- ``openvino fp32``: OpenVINO's CPU plugin on the same ONNX file; ``openvino int8``: that model's weights
  compressed by ``nncf.compress_weights`` (int8, asymmetric, per output channel; OpenVINO decides at run
  time whether to also quantize the activations).

Every runtime gets the same thread count. ONNX Runtime's threads are told not to spin while waiting (its
default), which would burn CPU after a call and be charged to the next backend's interval, and take
cores from the machine's other users.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

Runner = Callable[[], np.ndarray]
TORCH = ("torch fp32", "torch fp32 onednn", "torch int8")
EXPORTED = (
    "onnxruntime fp32",
    "onnxruntime int8",
    "openvino fp32",
    "openvino int8",
)
BACKENDS = TORCH + EXPORTED


class VisionPart(torch.nn.Module):
    """The vision tower and the connector on a window's frames, as ``get_image_features`` runs them."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.vision, self.connector = inner.vision_model, inner.connector

    def forward(self, pixel_values: torch.Tensor, patch_attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.vision(pixel_values=pixel_values, patch_attention_mask=patch_attention_mask)
        return self.connector(out.last_hidden_state)


class PrefillPart(torch.nn.Module):
    """The language model over the video prefix (no cache kept), returning the last token's final hidden
    state: the float output head runs after it, outside the timing, the same for every backend."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.text = inner.text_model

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        return self.text(inputs_embeds=inputs_embeds, use_cache=False).last_hidden_state[:, -1]


def int8_copy(model: Any) -> Any:
    """A copy of ``model`` at the worker's int8 precision (the original stays float)."""
    from workers.model.precision import apply_precision

    return apply_precision(copy.deepcopy(model), "int8")


def aten_copy(model: Any) -> Any:
    """A copy of ``model`` with ``nn.Linear``'s own kernel (the worker's float model runs oneDNN's)."""
    from workers.model.cpu_kernels import plain_linears

    plain = copy.deepcopy(model)
    plain_linears(plain)
    return plain


def torch_runner(part: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Runner:
    def run() -> np.ndarray:
        with torch.inference_mode():
            return part(**inputs).float().numpy()

    return run


def export_onnx(part: torch.nn.Module, inputs: dict[str, torch.Tensor], path: Path) -> float:
    """``part`` as ONNX at ``path`` (weights in a file beside it), for these input shapes; seconds taken."""
    began = time.perf_counter()
    # the exporter reports its steps on stdout, where this bench's last line must be its JSON
    with contextlib.redirect_stdout(sys.stderr), torch.no_grad():
        torch.onnx.export(
            part,
            (),
            str(path),
            kwargs=inputs,
            input_names=list(inputs),
            output_names=["out"],
            dynamo=True,
            external_data=True,
        )
    return time.perf_counter() - began


def onnxruntime_int8(fp32: Path, out: Path) -> tuple[float, int]:
    """``fp32`` with its MatMul/Gemm weights quantized to int8 at ``out``: seconds taken and how many
    nodes became integer ones."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    began = time.perf_counter()
    quantize_dynamic(
        fp32,
        out,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
        use_external_data_format=True,
    )
    took = time.perf_counter() - began
    graph = onnx.load(str(out), load_external_data=False).graph
    integer = sum(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in graph.node)
    return took, integer


def onnxruntime_runner(path: Path, inputs: dict[str, np.ndarray], threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}

    def run() -> np.ndarray:
        return np.asarray(session.run(None, feed)[0], dtype=np.float32)

    return run


def openvino_model(path: Path, *, int8: bool) -> tuple[Any, dict[str, Any]]:
    """OpenVINO's model read from the ONNX file, its weights compressed to int8 when ``int8``; the
    compression's seconds and how many weight tensors are int8."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    if not int8:
        return model, {}
    import nncf

    began = time.perf_counter()
    model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    took = time.perf_counter() - began
    eight_bit = (ov.Type.u8, ov.Type.i8)
    weights = sum(  # (out, in) int8 matrices, not their (out, 1) zero points
        op.get_type_name() == "Constant"
        and op.get_element_type() in eight_bit
        and len(shape := list(op.get_output_shape(0))) >= 2
        and int(shape[-1]) > 1
        for op in model.get_ops()
    )
    return model, {"compress_s": round(took, 1), "int8_weights": weights}


def openvino_runner(model: Any, inputs: dict[str, np.ndarray], threads: int) -> tuple[Runner, dict[str, str]]:
    """A runner on OpenVINO's CPU plugin, and the plugin's choices that explain its speed."""
    import openvino as ov

    # f32 asked for: on a CPU with AVX512_BF16 or AMX the plugin's default is bf16 (seen on an AVX-512
    # EPYC: "openvino fp32" differed from torch fp32 by 0.18 %), which would be another precision's row
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
        "INFERENCE_PRECISION_HINT": "f32",
    }
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    feed = {i.any_name: inputs[i.any_name] for i in compiled.inputs}
    chosen = {}
    for name in ("INFERENCE_PRECISION_HINT", "DYNAMIC_QUANTIZATION_GROUP_SIZE", "NUM_STREAMS"):
        with contextlib.suppress(RuntimeError):
            chosen[name] = str(compiled.get_property(name))

    def run() -> np.ndarray:
        request.infer(feed)
        return np.array(request.get_output_tensor(0).data, dtype=np.float32)

    return run, chosen
