from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from vigil.errors import ModelUnavailable, UnsupportedModel
from workers.model.loading import SUPPORTED_MODEL_TYPES, load_model
from workers.testing.models import FAMILIES, build_tiny_model


def test_each_family_loads_through_the_public_loader(loaded_models, family):
    loaded = loaded_models(family)
    assert loaded.adapter.family in {"llava_next_video", "qwen2_5_vl", "smolvlm2"}
    assert not loaded.model.training
    assert loaded.dtype == torch.float32 and loaded.device.type == "cpu"
    assert loaded.frame_side >= 28
    tok = loaded.tokenizer
    for ids in (loaded.yes_ids, loaded.no_ids):
        assert ids
        for token_id in ids:
            assert tok.decode([token_id]).strip().lower() in {"yes", "no"}
    assert {tok.decode([i]).strip().lower() for i in loaded.yes_ids} == {"yes"}


def test_video_token_is_a_single_special_token(tiny_model_dir, family):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir(family))
    tok = processor.tokenizer
    assert len(tok.encode(processor.video_token, add_special_tokens=False)) == 1
    assert tok.video_token_id == tok.convert_tokens_to_ids(processor.video_token)


def test_unknown_family_refused_before_weights(tmp_path):
    from transformers import BertConfig

    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    config.save_pretrained(tmp_path)
    # No weights and no processor in the directory: the refusal must come from the config alone.
    with pytest.raises(UnsupportedModel) as err:
        load_model(str(tmp_path), device="cpu")
    for model_type in SUPPORTED_MODEL_TYPES:
        assert model_type in str(err.value)


def test_llava_image_only_config_is_unsupported(tmp_path):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2),
        text_config=LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2),
    ).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModel, match="llava"):
        load_model(str(tmp_path), device="cpu")


def test_missing_directory_is_named_as_such(tmp_path):
    with pytest.raises(ModelUnavailable, match="no such model directory.*vigil selftest.*--model DIR"):
        load_model(str(tmp_path / "nowhere"), device="cpu")


def test_config_without_weights_is_unavailable(tmp_path, tiny_model_dir):
    (tmp_path / "config.json").write_text((tiny_model_dir("qwen2_vl") / "config.json").read_text())
    with pytest.raises(ModelUnavailable):
        load_model(str(tmp_path), device="cpu")


def test_builder_writes_a_loadable_directory_quickly(tmp_path):
    import time

    start = time.perf_counter()
    path = build_tiny_model("smolvlm2", tmp_path / "m", image_size=112, seed=3)
    assert time.perf_counter() - start < 5
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "smolvlm"
    with pytest.raises(ValueError, match="unknown family"):
        build_tiny_model("blip", tmp_path / "x")
    assert set(FAMILIES) == {"llava_next_video", "qwen2_5_vl", "qwen2_vl", "smolvlm2"}


def test_a_worker_refuses_an_unsupported_model_family_at_start(tmp_path: pathlib.Path) -> None:
    from transformers import BertConfig

    model_dir = tmp_path / "bert"
    config = BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
    config.save_pretrained(model_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | {
        "VIGIL_MODEL__ID": str(model_dir),
        "VIGIL_DATABASE__URL": f"sqlite:///{tmp_path / 'v.db'}",
        "VIGIL_BROKER__URL": f"sqla+sqlite:///{tmp_path / 'b.db'}",
    }
    argv = [sys.executable, "-m", "workers", "--queue", "gpu"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "not supported" in result.stderr and "llava_next_video" in result.stderr
    assert "Traceback" not in result.stderr
