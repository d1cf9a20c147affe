"""Shared fixtures for the worker tests: tiny models of the real architectures, built once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workers.testing.models import FAMILIES, cached_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory):
    """Return a function family -> directory of a saved tiny model (built once per session)."""
    root = tmp_path_factory.mktemp("tiny-models")

    def build(family: str) -> Path:
        return cached_tiny_model(family, root)

    return build


@pytest.fixture(scope="session")
def loaded_models(tiny_model_dir):
    """Return a function family -> LoadedModel (loaded once per session)."""
    from workers.model.loading import load_model

    cache: dict[str, object] = {}

    def get(family: str):
        if family not in cache:
            cache[family] = load_model(str(tiny_model_dir(family)), device="cpu", dtype="float32")
        return cache[family]

    return get


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def clip() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (8, 112, 112, 3), dtype=np.uint8)
