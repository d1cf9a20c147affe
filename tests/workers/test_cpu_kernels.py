"""A CPU model's Linear layers through oneDNN (workers/model/cpu_kernels.py): the same answers as
``nn.Linear``'s own kernel within float rounding, the same module tree, undone exactly, and left alone where
it does not apply (autograd, other dtypes) or cannot (int8 quantization, which replaces exact nn.Linear)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.activations import ACT2FN

from workers.model.cpu_kernels import (
    OneDnnLinear,
    gelu_algorithm,
    onednn_count,
    plain_linears,
    use_onednn_linears,
)
from workers.model.loading import load_model
from workers.model.precision import apply_precision
from workers.model.scoring import score_targets

DESCRIPTIONS = ["a dog", "my car", "smoke", "a white van"]


@pytest.mark.parametrize("family", ["smolvlm2", "llava_next_video", "qwen2_5_vl"])
def test_scores_agree_with_plain_linear_and_undo_is_exact(tiny_model_dir, clip, family: str) -> None:
    loaded = load_model(str(tiny_model_dir(family)), device="cpu", dtype="float32", precision="float")
    model = loaded.model
    linears = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert onednn_count(model) == linears > 0  # every one, the output head included
    tree, keys = [name for name, _ in model.named_modules()], list(model.state_dict())
    fast = np.array(score_targets(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS))

    assert plain_linears(model) == linears
    assert onednn_count(model) == 0
    assert all(type(m) is not OneDnnLinear for m in model.modules())
    plain = np.array(score_targets(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS))
    assert np.abs(fast - plain).max() <= 1e-5
    assert [name for name, _ in model.named_modules()] == tree and list(model.state_dict()) == keys

    assert use_onednn_linears(model) == linears
    again = np.array(score_targets(loaded, clip, fps=4.0, descriptions=DESCRIPTIONS))
    assert np.array_equal(again, fast)  # deterministic


def test_the_vision_mlps_gelu_runs_inside_fc1(tiny_model_dir) -> None:
    loaded = load_model(str(tiny_model_dir("smolvlm2")), device="cpu", dtype="float32", precision="float")
    mlps = [m for m in loaded.model.modules() if type(m).__name__ == "SmolVLMVisionMLP"]
    assert mlps and all(isinstance(m.activation_fn, torch.nn.Identity) for m in mlps)
    assert all(m.fc1.gelu == "tanh" for m in mlps)  # SigLIP's gelu_pytorch_tanh
    x = torch.randn(2, 7, mlps[0].fc1.in_features)
    with torch.inference_mode():
        fused = mlps[0](x)
    plain_linears(loaded.model)
    assert all(type(m.activation_fn).__name__ == "GELUTanh" for m in mlps)  # put back
    with torch.inference_mode():
        torch.testing.assert_close(fused, mlps[0](x), rtol=1e-5, atol=1e-6)


def test_gelu_algorithms_are_recognised_and_others_are_not() -> None:
    assert gelu_algorithm(ACT2FN["gelu_pytorch_tanh"]) == "tanh"
    assert gelu_algorithm(ACT2FN["gelu"]) == "none"
    assert gelu_algorithm(torch.nn.GELU(approximate="tanh")) == "tanh"
    for other in ("quick_gelu", "silu", "gelu_new", "relu"):  # CLIP's quick_gelu stays a pass of its own
        assert gelu_algorithm(ACT2FN[other]) is None


def test_autograd_and_other_dtypes_keep_nn_linears_kernel() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8, requires_grad=True)
    expected = layer(x)
    assert use_onednn_linears(layer) == 1
    out = layer(x)  # grad mode: F.linear, so the gradient exists
    assert torch.equal(out, expected)
    out.sum().backward()
    assert x.grad is not None
    half = torch.nn.Linear(8, 4).to(torch.bfloat16)
    assert use_onednn_linears(half) == 0 and type(half) is torch.nn.Linear


def test_int8_quantizes_an_onednn_model_and_keeps_its_head_on_onednn(tiny_model_dir) -> None:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    loaded = load_model(str(tiny_model_dir("smolvlm2")), device="cpu", dtype="float32", precision="float")
    linears = onednn_count(loaded.model)
    model = apply_precision(loaded.model, "int8")  # the float model already runs through oneDNN
    assert sum(isinstance(m, DynamicLinear) for m in model.modules()) == linears - 1
    assert onednn_count(model) == 1 and isinstance(model.get_output_embeddings(), OneDnnLinear)
