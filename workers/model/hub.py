"""Where a model comes from: a local directory, the Hugging Face cache, or the hub, asked once.

Offline, huggingface_hub retries each file five times with back-off (43 s measured for one config file on
a machine without network) before transformers gives up with a message that names neither a local model
directory nor `vigil selftest`. Here the hub is asked once, with a short connect timeout, before any
download; unreachable (or HF_HUB_OFFLINE set), only local files are used and the error says what to do.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from vigil.config.checks import looks_like_path
from vigil.errors import ModelUnavailable

CONNECT_TIMEOUT_S = 3.0
HINT = (
    "run `vigil selftest` to check the installation with a tiny model, or pass `--model DIR` "
    "(model.id) with a directory holding a saved model"
)


def hub_offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    return not _hub_reachable(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")


@lru_cache(maxsize=4)
def _hub_reachable(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def local_files_only(model: str) -> bool:
    """True when the model must come from disk: a directory, or a hub id while the hub is out of reach.
    A path that names no directory is refused here, as such (not as a malformed hub id)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return True
    if looks_like_path(model):
        raise ModelUnavailable(f"{model}: no such model directory; {HINT}")
    return hub_offline()


def unavailable(model: str, what: str, exc: BaseException, *, local_only: bool) -> ModelUnavailable:
    """The one-line error for a model that cannot be read, saying why and what to do."""
    if local_only and not Path(model).expanduser().is_dir():
        return ModelUnavailable(
            f"{model}: not in the local Hugging Face cache and the hub is unreachable (or HF_HUB_OFFLINE "
            f"is set); {HINT}"
        )
    return ModelUnavailable(f"{model}: cannot read the {what} ({exc}); {HINT}")
