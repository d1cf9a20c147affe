"""The model's numbers: its device and float dtype (``model.device``, ``model.dtype``) and its weights at
the precision the settings ask for (``model.precision``).

``float`` leaves the weights as loaded (in ``model.dtype``). ``int8`` replaces every ``nn.Linear`` of the
model (vision tower, connector, language model) but the output head with PyTorch's dynamically quantized
one: int8 weights, per-tensor scale, activations quantized on the fly per call, int8 GEMMs through FBGEMM.
It is a CPU path (the quantized kernels run on the CPU only). The output head stays float: it runs for one
token a question, and its logits are the yes/no scores. Activations are quantized per tensor, so a row's
scores move slightly with the other rows of its batch (within the agreement tolerance of
tests/workers/test_precision.py). Per-channel weight scales (``per_channel_dynamic_qconfig``) were measured
and do not agree better (SmolVLM2-500M, random weights, two windows: P(yes) moved up to 0.013 against 0.012
per tensor, features 6.0 % against 7.0 %, at the same speed): the error comes from the activations'
per-tensor quantization, so the per-tensor weights stay. ``auto``: ``CPU_DEFAULT`` on a CPU in float32,
``float`` elsewhere. At either precision, a CPU model's float32 Linear layers run through oneDNN
(``workers.model.cpu_kernels``: the kernel, not the numbers, changes).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal

import torch

from vigil.errors import ConfigError
from workers.model.cpu_kernels import plain_linears, use_onednn_linears

log = logging.getLogger(__name__)

Precision = Literal["auto", "float", "int8"]
CPU_DEFAULT: Literal["float", "int8"] = "float"  # what ``auto`` means on a CPU (docs/operations.md, sizing)


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, {', '.join(names)}")
    return names[dtype]


def resolve_precision(precision: str, device: torch.device, dtype: torch.dtype) -> Literal["float", "int8"]:
    """The precision ``precision`` means for a model on ``device`` in ``dtype``; int8 where it cannot run
    is a ConfigError naming the setting."""
    on_cpu = device.type == "cpu" and dtype == torch.float32
    if precision == "auto":
        return CPU_DEFAULT if on_cpu else "float"
    if precision == "int8" and not on_cpu:
        raise ConfigError(
            f"model.precision = int8 runs on the CPU with float32 weights, not on {device} as {dtype}"
        )
    if precision not in ("float", "int8"):
        raise ConfigError(f"model.precision: unknown {precision!r}; use auto, float or int8")
    return "int8" if precision == "int8" else "float"


def apply_precision(model: Any, precision: str) -> Any:
    """``model`` at ``precision`` (float: its weights unchanged; int8: its Linear layers quantized, on the
    CPU). On a CPU in float32 the float Linear layers left (all of them, or int8's output head) run through
    oneDNN (workers.model.cpu_kernels): the same weights, a faster kernel."""
    if precision != "float":
        device = next(model.parameters()).device
        resolve_precision(precision, device, next(model.parameters()).dtype)
        plain_linears(model)  # quantize_dynamic replaces exactly nn.Linear
        head = model.get_output_embeddings()
        with warnings.catch_warnings():
            # torch.ao's eager API, deprecated for torchao
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            from torch.ao.quantization import quantize_dynamic

            model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        if head is not None:
            model.set_output_embeddings(head)  # float again (quantize_dynamic swapped it)
        log.info("quantized the Linear layers to int8 (dynamic, per-tensor)")
    use_onednn_linears(model)
    return model
