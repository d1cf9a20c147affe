"""Health checks for container orchestration: one `Check` per dependency, each with a one-line message.

- `database`: reachable and at the migrations' head revision (a SQLite file that does not exist is reported,
  never created);
- `broker`: a kombu connection established within a short timeout;
- the `workers` and `model` checks live with the composition root (`vigil.cli.health`): the model check
  imports the workers, which the core never does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from vigil.config.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str
    seconds: float = 0.0

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name:<8} {self.message} ({self.seconds * 1000:.0f} ms)"


def check_database(settings: Settings) -> Check:
    from vigil.store.db import make_engine, no_database_message, schema_revision
    from vigil.store.migrate import head_revision

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
        return Check("database", False, f"{shown}: unreachable: {first_line(exc)}")
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
    shown = url_for_display(url)
    try:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout_s)
    except Exception as exc:
        return Check("broker", False, f"{shown}: unreachable: {first_line(exc)}")
    finally:
        connection.release()
    return Check("broker", True, f"{shown}: reachable")


def url_for_display(url: str) -> str:
    """A database or broker URL with its password as `***`; one without a password is shown as it is."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not in the form SQLAlchemy parses: shown only up to its host part
        return url.split("@")[-1] if "@" in url else url


CORE_CHECKS: list[Callable[[Settings], Check]] = [check_database, check_broker]


def run_checks(settings: Settings, checks: Sequence[Callable[[Settings], Check]]) -> list[Check]:
    """Run checks in order; each one is timed and never raises. The CLI adds the worker's model check."""
    results = []
    for check in checks:
        began = time.perf_counter()
        try:
            result = check(settings)
        except Exception as exc:  # a check with a bug still answers, as a failure
            log.debug("health check %s raised", check.__name__, exc_info=True)
            result = Check(check.__name__.removeprefix("check_"), False, first_line(exc))
        results.append(Check(result.name, result.ok, result.message, time.perf_counter() - began))
    return results


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
