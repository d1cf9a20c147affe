"""A FLOP counter that also counts attention on the CPU.

``torch.utils.flop_counter`` knows the CUDA attention kernels (flash, memory-efficient, cuDNN) but not
``aten._scaled_dot_product_flash_attention_for_cpu``, the kernel ``scaled_dot_product_attention`` runs on a
CPU: its FLOPs counted zero. For SigLIP at 512 px (1,024 patches a frame, 12 layers) that left out 0.31 of
the vision tower's 1.72 TFLOP for 8 frames, so the tower's rate against the GEMM rate read 71 % where the
work done was 86 % (issue 27). The CPU kernel does the same two products as the others: the same formula.
Likewise ``mkldnn._linear_pointwise``, the oneDNN linear the worker runs on a CPU
(workers/model/cpu_kernels.py): the counter does not know it, and it is a linear's product (a fused GELU or
bias adds no FLOP to count, as for ``addmm``).
"""

from __future__ import annotations

from typing import Any


def cpu_attention_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return int(sdpa_flop_count(query_shape, key_shape, value_shape))


def onednn_linear_flops(input_shape: Any, weight_shape: Any, *args: Any, **kwargs: Any) -> int:
    rows = 1
    for n in input_shape[:-1]:
        rows *= n
    return 2 * rows * weight_shape[0] * weight_shape[1]


def counter() -> Any:
    """A ``FlopCounterMode`` (no display) that counts the CPU attention kernel and oneDNN's linear too."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    cpu_attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    onednn_linear = torch.ops.mkldnn._linear_pointwise
    return FlopCounterMode(
        display=False,
        custom_mapping={cpu_attention: cpu_attention_flops, onednn_linear: onednn_linear_flops},
    )
