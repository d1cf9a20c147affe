"""The model's weights at the precision the settings ask for (``model.precision``).

``fp32`` leaves the model as loaded. ``int8`` replaces every ``nn.Linear`` of the model (vision tower,
connector, language model) but the output head with PyTorch's dynamically quantized one: int8 weights,
per-tensor scale, activations quantized on the fly per call, int8 GEMMs through FBGEMM. It is a CPU path
(the quantized kernels run on the CPU only). The output head stays float: it runs for one token a
question, and its logits are the yes/no scores.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Literal

import torch

log = logging.getLogger(__name__)

Precision = Literal["fp32", "int8"]


def apply_precision(model: Any, precision: str) -> Any:
    """``model`` at ``precision`` (fp32: unchanged; int8: its Linear layers quantized, on the CPU)."""
    if precision == "fp32":
        return model
    if precision != "int8":
        raise ValueError(f"unknown precision {precision!r}; use fp32 or int8")
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"int8 precision runs on the CPU only; the model is on {device}")
    head = model.get_output_embeddings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao's eager API, deprecated for torchao
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        quantized = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    if head is not None:
        model.set_output_embeddings(head)  # float again (quantize_dynamic swapped it)
    log.info("quantized the Linear layers to int8 (dynamic, per-tensor)")
    return quantized
