"""Fixtures for real services: migrated SQLite and PostgreSQL databases, a Redis server of our own.

PostgreSQL runs on this machine (127.0.0.1:5432, trust auth); each test gets a fresh database, copied from
one migrated once per session, and drops it after. Redis for fault tests is started by the fixture on a
free port. The code behind the fixtures is `tests.support.services`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.support.services import (
    PG_ADMIN_URL,
    RedisServer,
    missing_service,
    pg_database,
    pg_template,
)
from vigil.store.migrate import upgrade


@pytest.fixture(autouse=True)
def private_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default data dir ($XDG_DATA_HOME/vigil) of every process a test starts, inside the test's tmp."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    return tmp_path / "xdg-data" / "vigil"


@pytest.fixture(autouse=True)
def close_alerting_engines() -> Iterator[None]:
    """The engines `tests.support.alerting` opened during a test are disposed of after it (none: a no-op)."""
    yield
    from tests.support.alerting import dispose_engines

    dispose_engines()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database file, fresh for each test."""
    url = f"sqlite:///{tmp_path / 'vigil.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def pg_server() -> str:
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        missing_service(f"PostgreSQL at {PG_ADMIN_URL}: {exc}")
    finally:
        engine.dispose()
    return PG_ADMIN_URL


@pytest.fixture
def pg_empty_url(pg_server: str) -> Iterator[str]:
    """A brand-new, empty PostgreSQL database (not migrated), dropped after the test."""
    with pg_database(pg_server) as url:
        yield url


@pytest.fixture(scope="session")
def pg_migrated_template(pg_server: str) -> Iterator[str]:
    """Migrated once per session; every `pg_url` is a copy of it."""
    with pg_template(pg_server) as name:
        yield name


@pytest.fixture
def pg_url(pg_server: str, pg_migrated_template: str) -> Iterator[str]:
    """A migrated PostgreSQL database, fresh for each test (a copy of the session's template)."""
    with pg_database(pg_server, template=pg_migrated_template) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs on SQLite and on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop(kill=True)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_llava(tiny_models_dir: Path) -> Path:
    """A tiny randomly initialised LLaVA-NeXT-Video saved with save_pretrained (built once per session)."""
    from workers.testing.models import cached_tiny_model

    return cached_tiny_model("llava_next_video", tiny_models_dir)


CHROMIUM = os.environ.get("VIGIL_TEST_CHROMIUM") or shutil.which("chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (its own browser download is not used; `make tools` installs
    the chromium package)."""
    if CHROMIUM is None:
        missing_service("chromium is not installed (make tools installs Debian's)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # A viewer in another zone than the server's UTC: times must show in the viewer's.
    # bypass_csp: Playwright's wait_for_function evaluates its string in the page, which the review page's
    # CSP (no eval) refuses; tests/web/test_attacks.py drives the pages under their real CSP.
    context = browser.new_context(
        viewport={"width": 1400, "height": 900}, timezone_id="Europe/Paris", bypass_csp=True
    )
    context.set_default_timeout(30_000)
    page = context.new_page()
    yield page
    context.close()
