"""int8 weights (``model.precision``) agree with float ones: on the same inputs P(yes) moves by at most
``TOLERANCE``, and a matched/unmatched decision further than that from its threshold does not change. Tiny
models answer about 0.6 +- 0.001 everywhere, so the decision check runs with both models' output heads
scaled by 40 (the same float head in both), which spreads the scores over about 0.15 and magnifies every
difference in the hidden states that int8 causes as much. What this shows is modest: int8 moves P(yes) by
about a quarter to a half of the spread between inputs here (0.0009 of 0.0038 unscaled, 0.071 of 0.15
scaled), mostly one way; how far it moves the trained model's answers, random weights cannot say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vigil.config.settings import ModelSettings
from vigil.errors import ConfigError
from workers.model.loading import load_configured_model, load_model
from workers.model.precision import CPU_DEFAULT, apply_precision, resolve_precision
from workers.model.scoring import score_targets

TOLERANCE = 0.002  # |P(yes) int8 - P(yes) float| on the same inputs (measured: 0.0009)
SCALED_TOLERANCE = 0.1  # the same with the output head scaled by 40 (measured: 0.071)
DESCRIPTIONS = ["a dog", "my car", "smoke", "a person walking by the gate", "a white van", "a red bicycle"]


def quantized_linears(model) -> int:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return sum(1 for m in model.modules() if isinstance(m, DynamicLinear))


def both(tiny_model_dir, family: str):
    path = str(tiny_model_dir(family))
    return (
        load_model(path, device="cpu", dtype="float32", precision="float"),
        load_model(path, device="cpu", dtype="float32", precision="int8"),
    )


@pytest.mark.parametrize("family", ["smolvlm2", "llava_next_video"])
def test_int8_scores_are_within_the_tolerance_of_float(tiny_model_dir, family: str, clip) -> None:
    exact, int8 = both(tiny_model_dir, family)
    assert quantized_linears(exact.model) == 0
    linears = sum(1 for m in exact.model.modules() if isinstance(m, torch.nn.Linear))
    assert quantized_linears(int8.model) == linears - 1  # all but the output head
    assert isinstance(int8.model.get_output_embeddings(), torch.nn.Linear)
    a = np.array(score_targets(exact, clip, fps=4.0, descriptions=DESCRIPTIONS))
    b = np.array(score_targets(int8, clip, fps=4.0, descriptions=DESCRIPTIONS))
    assert np.abs(a - b).max() <= TOLERANCE
    assert np.abs(a - b).max() > 0  # int8 did run


def test_decisions_away_from_the_threshold_do_not_change(tiny_model_dir, clip) -> None:
    exact, int8 = both(tiny_model_dir, "smolvlm2")
    head = exact.model.get_output_embeddings()  # tied to the input embeddings: scale a copy, untied
    scaled = torch.nn.Linear(head.in_features, head.out_features, bias=False)
    with torch.no_grad():
        scaled.weight.copy_(head.weight * 40.0)
    exact.model.set_output_embeddings(scaled)
    int8.model.set_output_embeddings(scaled)
    frames = [clip, clip[::-1].copy(), clip[:4]]
    a = np.array([score_targets(exact, f, fps=4.0, descriptions=DESCRIPTIONS) for f in frames]).ravel()
    b = np.array([score_targets(int8, f, fps=4.0, descriptions=DESCRIPTIONS) for f in frames]).ravel()
    assert np.ptp(a) > 0.1  # spread out (about 0.6 +- 0.001 unscaled): thresholds among them decide
    compared = 0
    for threshold in np.linspace(a.min(), a.max(), 11):
        away = np.abs(a - threshold) > SCALED_TOLERANCE
        assert ((a >= threshold) == (b >= threshold))[away].all()
        compared += int(away.sum())
    assert compared >= 20  # 31 of 198 score-threshold pairs here; the rest lie within the tolerance
    assert 0 < np.abs(a - b).max() <= SCALED_TOLERANCE, np.abs(a - b).max()


def test_the_setting_reaches_the_loaded_model(tiny_model_dir) -> None:
    path = str(tiny_model_dir("smolvlm2"))
    loaded = load_configured_model(ModelSettings(id=path, device="cpu", precision="int8"))
    assert quantized_linears(loaded.model) > 0
    loaded = load_configured_model(ModelSettings(id=path, device="cpu", precision="float"))
    assert quantized_linears(loaded.model) == 0
    assert ModelSettings().precision == "auto"
    with pytest.raises(ValueError, match="precision"):
        ModelSettings(precision="int4")  # type: ignore[arg-type]


def test_auto_and_where_int8_cannot_run() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu, torch.float32) == CPU_DEFAULT
    assert resolve_precision("auto", cuda, torch.bfloat16) == "float"
    assert resolve_precision("auto", cpu, torch.bfloat16) == "float"
    assert resolve_precision("int8", cpu, torch.float32) == "int8"
    with pytest.raises(ConfigError, match="model.precision = int8 runs on the CPU"):
        resolve_precision("int8", cuda, torch.bfloat16)
    with pytest.raises(ConfigError, match="model.precision = int8 runs on the CPU"):
        resolve_precision("int8", cpu, torch.bfloat16)
    with pytest.raises(ConfigError, match="unknown 'int4'"):
        apply_precision(torch.nn.Linear(2, 2), "int4")
