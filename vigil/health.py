"""Health checks for container orchestration: one `Check` per dependency, each with a one-line message.

- `database`: reachable and at the migrations' head revision (a SQLite file that does not exist is reported,
  never created);
- `broker`: a kombu connection established within a short timeout;
- `model` (workers only): the configuration readable and its family supported. This imports transformers
  (and torch), so only the worker's checks pay for it; it sets HF_HUB_OFFLINE=1 so it never downloads.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import make_url

from vigil.settings import Settings

log = logging.getLogger(__name__)

Component = Literal["watcher", "worker", "all"]


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str
    seconds: float = 0.0

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name:<8} {self.message} ({self.seconds * 1000:.0f} ms)"


def check_database(settings: Settings) -> Check:
    from vigil.db import make_engine, no_database_message, schema_revision
    from vigil.migrate import head_revision

    url = settings.database.url
    parsed = make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    on_disk = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    if on_disk and not Path(str(parsed.database)).expanduser().is_file():
        return Check("database", False, no_database_message(Path(str(parsed.database)).expanduser()))
    engine = make_engine(settings.database)
    try:
        current = schema_revision(engine)
    except Exception as exc:
        return Check("database", False, f"{shown}: unreachable: {_first_line(exc)}")
    finally:
        engine.dispose()
    head = head_revision()
    if current != head:
        return Check("database", False, f"{shown}: at revision {current or '(none)'}, needs {head}")
    return Check("database", True, f"{shown}: reachable, at revision {head}")


def check_broker(settings: Settings, *, timeout_s: float = 3.0) -> Check:
    from kombu import Connection

    url = settings.broker.url
    connection = Connection(url, connect_timeout=timeout_s, transport_options={"socket_timeout": timeout_s})
    shown = connection.as_uri()
    try:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout_s)
    except Exception as exc:
        return Check("broker", False, f"{shown}: unreachable: {_first_line(exc)}")
    finally:
        connection.release()
    return Check("broker", True, f"{shown}: reachable")


def check_model(settings: Settings) -> Check:
    from vigil.errors import VigilError

    model = settings.model.id
    # A health check never downloads: a worker's model is on disk or in the cache, or it is unhealthy.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from workers.models import check_model_supported

        family = check_model_supported(model)
    except VigilError as exc:
        return Check("model", False, _first_line(exc))
    except ImportError as exc:
        return Check("model", False, f"{model}: the worker's libraries are not installed ({exc})")
    return Check("model", True, f"{model}: configuration readable, family {family} supported")


CHECKS: dict[str, list[Callable[[Settings], Check]]] = {
    "watcher": [check_database, check_broker],
    "worker": [check_database, check_broker, check_model],
    "all": [check_database, check_broker, check_model],
}


def run_checks(settings: Settings, component: Component = "all") -> list[Check]:
    """Run the checks of one component in order; each one is timed and never raises."""
    results = []
    for check in CHECKS[component]:
        began = time.perf_counter()
        try:
            result = check(settings)
        except Exception as exc:  # a check with a bug still answers, as a failure
            log.debug("health check %s raised", check.__name__, exc_info=True)
            result = Check(check.__name__.removeprefix("check_"), False, _first_line(exc))
        results.append(Check(result.name, result.ok, result.message, time.perf_counter() - began))
    return results


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
