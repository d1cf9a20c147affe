"""A model that cannot be had fails at once, in one line that says what to do: no hub retries offline,
a missing model directory named as such (not "Repo id must be in the form ...")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import free_port
from vigil.errors import ModelUnavailable
from workers.model.hub import HINT
from workers.model.loading import check_model_supported

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An empty Hugging Face cache and a hub endpoint nobody listens on (as on a machine offline)."""
    env = {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return env


def test_a_hub_id_offline_is_refused_naming_selftest_and_model_dir(no_hub: dict[str, str]) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        check_model_supported("HuggingFaceTB/SmolVLM2-500M-Video-Instruct")
    message = str(caught.value)
    assert "the hub is unreachable" in message
    assert "vigil selftest" in message and "--model DIR" in message


@pytest.mark.parametrize("model", ["/models/not-there", "./not-there", "models/a/b"])
def test_a_missing_model_directory_is_reported_as_such(no_hub: dict[str, str], model: str) -> None:
    with pytest.raises(ModelUnavailable) as caught:
        check_model_supported(model)
    assert str(caught.value) == f"{model}: no such model directory; {HINT}"
    assert "Repo id" not in str(caught.value)


def test_vigil_run_offline_fails_in_one_line_without_hub_retries(
    no_hub: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "in").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")} | no_hub
    # Text logs: with JSON ones (the default when stderr is not a terminal) the line is a JSON record.
    env |= {
        "PYTHONPATH": str(REPO),
        "VIGIL_STORAGE__DATA_DIR": str(tmp_path / "data"),
        "VIGIL_LOG__FORMAT": "text",
    }
    result = subprocess.run(
        [sys.executable, "-m", "vigil", "run", "--watch", str(tmp_path / "in")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Retrying" not in result.stderr and "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "vigil selftest" in error[0] and "--model DIR" in error[0], result.stderr
