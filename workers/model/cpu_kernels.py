"""A float32 model's Linear layers on the CPU through oneDNN (``torch.ops.mkldnn._linear_pointwise``),
with a vision MLP's GELU done inside its first product.

PyTorch's own CPU ``linear`` with a bias is ``addmm``: it first copies the bias into every row of the output
and then adds the product to it, and a GELU after it is one more pass over a tensor of 8 x 1,024 x 3,072
floats per SigLIP layer. oneDNN adds the bias and applies the GELU as the product's rows are written.
Measured on SmolVLM2-500M at its published size (random weights, 8 frames at 512 px, 2 threads, a quiet
AVX-512 EPYC, three alternations each): the vision tower took 12.0-13.8 s through ``addmm`` and
9.8-10.2 s through oneDNN (10.3-11.9 s without the fused GELU); the language model, one token at a time
without a cache, 108-120 ms a step against 66-80 ms; a 600-token prefill the same (2.5-3.0 s both).
The results differ from ``addmm``'s by float rounding only (5e-6 at most in the tower's features).

Only where it applies: a model on the CPU in float32, with oneDNN in this build of PyTorch, and not while
autograd records (the op has no backward). Everything else keeps ``nn.Linear``'s own forward. The layers stay
``nn.Linear`` instances (the class is a subclass swapped in place, the parameters untouched), so state dicts,
``get_output_embeddings`` and hooks see the same model; ``plain_linears`` undoes it (before int8
quantization, which replaces exactly ``nn.Linear``, and before an ONNX export, which has no such op).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

# MLPs whose forward is fc1 -> activation_fn -> fc2 (read in transformers 5.x): their GELU may join fc1
GELU_MLPS = ("SiglipMLP", "SmolVLMVisionMLP", "Idefics3VisionMLP", "CLIPMLP")


class OneDnnLinear(nn.Linear):
    """``nn.Linear`` whose forward runs through oneDNN, with an optional GELU after it (``gelu``: oneDNN's
    algorithm, "tanh" or "none" for the exact one)."""

    gelu: str | None = None
    fused_activation: nn.Module | None = None  # the module the GELU replaced, for plain_linears

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.device.type != "cpu" or input.dtype != torch.float32 or torch.is_grad_enabled():
            out = F.linear(input, self.weight, self.bias)
            return F.gelu(out, approximate=self.gelu) if self.gelu is not None else out
        if self.gelu is None:
            return torch.ops.mkldnn._linear_pointwise(input, self.weight, self.bias, "none", [], "")
        return torch.ops.mkldnn._linear_pointwise(input, self.weight, self.bias, "gelu", [], self.gelu)


def applies(model: nn.Module) -> bool:
    """Whether ``model`` runs on the CPU in float32 with oneDNN available."""
    first = next(model.parameters(), None)
    return (
        first is not None
        and first.device.type == "cpu"
        and first.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
    )


def gelu_algorithm(activation: nn.Module) -> str | None:
    """oneDNN's name for ``activation`` if it is a GELU it can fuse ("tanh" or "none"), else None."""
    if isinstance(activation, nn.GELU):
        return activation.approximate
    act = getattr(activation, "act", None)  # transformers' GELUActivation and GELUTanh keep the function here
    if act is F.gelu:
        return "none"
    if isinstance(act, functools.partial) and act.func is F.gelu and set(act.keywords) == {"approximate"}:
        return str(act.keywords["approximate"])
    return None


def use_onednn_linears(model: nn.Module) -> int:
    """Every float ``nn.Linear`` of ``model`` through oneDNN, GELUs fused where an MLP allows; how many
    layers now run that way (0 where it does not apply)."""
    if not applies(model):
        return 0
    for module in model.modules():
        if type(module).__name__ in GELU_MLPS and type(module.fc1) is nn.Linear:
            algorithm = gelu_algorithm(module.activation_fn)
            if algorithm is not None:
                module.fc1.__class__ = OneDnnLinear
                module.fc1.gelu = algorithm
                # kept outside the module tree: the model's modules() and state_dict() stay as they were
                object.__setattr__(module.fc1, "fused_activation", module.activation_fn)
                module.activation_fn = nn.Identity()
    for module in model.modules():
        if type(module) is nn.Linear and module.weight.dtype == torch.float32:
            module.__class__ = OneDnnLinear
    swapped = onednn_count(model)
    log.info("%d Linear layers run through oneDNN on the CPU", swapped)
    return swapped


def plain_linears(model: nn.Module) -> int:
    """Undo ``use_onednn_linears``: every layer ``nn.Linear`` again, each fused GELU back in its MLP; how
    many layers were changed back."""
    for module in model.modules():  # the GELUs first: their fc1 still holds them
        fused = getattr(module, "fc1", None) if type(module).__name__ in GELU_MLPS else None
        if isinstance(fused, OneDnnLinear) and fused.fused_activation is not None:
            module.activation_fn = fused.fused_activation
    restored = 0
    for layer in model.modules():
        if isinstance(layer, OneDnnLinear):
            layer.__dict__.pop("gelu", None)
            layer.__dict__.pop("fused_activation", None)
            layer.__class__ = nn.Linear
            restored += 1
    return restored


def onednn_count(model: Any) -> int:
    """How many of ``model``'s layers run through oneDNN."""
    return sum(isinstance(m, OneDnnLinear) for m in model.modules())
