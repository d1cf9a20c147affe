"""A real Home Assistant Core for tests, read through its REST API as a user's dashboard reads it.

Home Assistant is installed once into a virtual environment of its own under a cache folder
(`$VIGIL_TEST_CACHE`, else `~/.cache/vigil-tests`), never into the project's: 2024.3.3 is the last release
that installs on Python 3.11, and it needs `josepy<2` (else `acme` fails and every request answers 500).
The MQTT integration's own requirements are installed with it and Home Assistant runs with `--skip-pip`, so
nothing is installed while it starts. MQTT is configured by writing its config entry into
`.storage/core.config_entries`; the API token comes from the onboarding API (a fresh instance's first user).
When the installation is impossible (no network, another Python), the tests that need it skip with pip's
reason.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import free_port

HASS_VERSION = "2024.3.3"
REQUIREMENTS = [
    f"homeassistant=={HASS_VERSION}",
    "josepy<2",
    # what the integrations it loads require, pinned as their 2024.3.3 manifests pin them: mqtt, file_upload,
    # image_upload; frontend, onboarding, backup and hardware (without them it starts in recovery mode,
    # without MQTT); camera and stream, which the MQTT integration imports
    "paho-mqtt==1.6.1",
    "janus==1.0.0",
    "Pillow==10.2.0",
    "home-assistant-frontend==20240307.0",
    "securetar==2024.2.1",
    "psutil-home-assistant==0.0.1",
    "SQLAlchemy==2.0.27",  # analytics (onboarding's dependency) imports the recorder's models
    "fnv-hash-fast==0.5.0",
    "PyTurboJPEG==1.7.1",
    "ha-av==10.1.1",
    "numpy==1.26.0",
]
INSTALL_TIMEOUT_S = 1800  # measured: 4.5 min on 2 idle cores, over 15 min on 2 busy ones
START_TIMEOUT_S = 120


def cache_dir() -> Path:
    return Path(os.environ.get("VIGIL_TEST_CACHE") or Path.home() / ".cache" / "vigil-tests")


def hass_python() -> Path:
    """The Python of a virtual environment with Home Assistant Core, installed on first use (minutes)."""
    if sys.version_info[:2] not in ((3, 11), (3, 12)):
        pytest.skip(f"Home Assistant {HASS_VERSION} needs Python 3.11 or 3.12, not {sys.version.split()[0]}")
    venv = cache_dir() / f"hass-{HASS_VERSION}"
    python = venv / "bin" / "python"
    done = venv / ".installed"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"hass-{HASS_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time; the others wait and reuse it
        if done.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        pip = [str(python), "-m", "pip", "install", "--no-input"]
        # Home Assistant's own pins (package_constraints.txt, as its container image installs): without them
        # pip backtracks through unpinned dependencies (habluetooth) for many minutes
        site = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
        constraints = str(site / "homeassistant" / "package_constraints.txt")
        steps = [
            [base, "-m", "venv", str(venv)],
            [*pip, "--no-deps", REQUIREMENTS[0]],
            [*pip, "--constraint", constraints, *REQUIREMENTS],
        ]
        log = venv.parent / f"hass-{HASS_VERSION}-install.log"  # to follow a slow install: tail -f
        with open(log, "w") as out:
            for step in steps:
                try:
                    code = subprocess.run(
                        step, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S
                    )
                except subprocess.TimeoutExpired:
                    pytest.skip(
                        f"installing Home Assistant {HASS_VERSION} took over {INSTALL_TIMEOUT_S} s ({log})"
                    )
                if code.returncode != 0:
                    lines = [
                        line for line in log.read_text().splitlines() if "ignored: it is neither" not in line
                    ]
                    pytest.skip(
                        f"cannot install Home Assistant {HASS_VERSION}: {' '.join(lines[-3:])} ({log})"
                    )
        done.touch()
    return python


class HomeAssistant:
    """Home Assistant Core on a free port, its MQTT integration on the given broker."""

    def __init__(self, workdir: Path, *, mqtt_port: int, discovery_prefix: str = "homeassistant") -> None:
        self.config = workdir / "hass-config"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mqtt_port = mqtt_port
        self.discovery_prefix = discovery_prefix
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""

    def _write_config(self) -> None:
        (self.config / ".storage").mkdir(parents=True, exist_ok=True)
        (self.config / "configuration.yaml").write_text(
            "homeassistant:\n  name: Vigil test\n  latitude: 52.37\n  longitude: 4.89\n  elevation: 0\n"
            "  unit_system: metric\n  time_zone: UTC\n  country: NL\n  currency: EUR\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\napi:\nonboarding:\n"
        )
        mqtt = {
            "entry_id": "vigiltestmqtt",
            "version": 1,
            "minor_version": 1,
            "domain": "mqtt",
            "title": "Mosquitto",
            "data": {
                "broker": "127.0.0.1",
                "port": self.mqtt_port,
                "discovery": True,
                "discovery_prefix": self.discovery_prefix,
            },
            "options": {},
            "source": "user",
            "unique_id": None,
            "disabled_by": None,
            "pref_disable_new_entities": False,
            "pref_disable_polling": False,
        }
        entries = {
            "version": 1,
            "minor_version": 1,
            "key": "core.config_entries",
            "data": {"entries": [mqtt]},
        }
        (self.config / ".storage" / "core.config_entries").write_text(json.dumps(entries))

    def start(self) -> float:
        """Start it, make the first user, get a token; returns the seconds that took."""
        python = hass_python()
        self._write_config()
        began = time.monotonic()
        with open(self.config / "stdout.log", "wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [str(python), "-m", "homeassistant", "--config", str(self.config), "--skip-pip"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait(lambda: self._request("GET", "/api/onboarding", auth=False) is not None, START_TIMEOUT_S)
        self.token = self._onboard()
        return time.monotonic() - began

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        path = self.config / "home-assistant.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _onboard(self) -> str:
        client_id = f"{self.url}/"
        user = {
            "client_id": client_id,
            "name": "Test",
            "username": "test",
            "password": "vigil-test-pw",
            "language": "en",
        }
        answer = self._request("POST", "/api/onboarding/users", body=user, auth=False)
        assert answer is not None, f"onboarding refused:\n{self.log_tail()}"
        form = {"grant_type": "authorization_code", "code": answer["auth_code"], "client_id": client_id}
        token = self._request("POST", "/auth/token", form=form, auth=False)
        assert token is not None, f"no token:\n{self.log_tail()}"
        return str(token["access_token"])

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        form: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Any:
        """The JSON answer, or None for a 404 or a server not answering yet."""
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise AssertionError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from exc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        return json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw.decode()

    def _wait(self, check: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is None or self.process.poll() is None, (
                f"Home Assistant exited:\n{self.log_tail()}"
            )
            found = check()
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:g} s; Home Assistant's log ends:\n{self.log_tail()}")

    # -- what a user sees ---------------------------------------------------------------------------

    def state(self, entity_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._request("GET", f"/api/states/{entity_id}")
        return found

    def states(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._request("GET", "/api/states") or []
        return found

    def wait_state(self, entity_id: str, state: str, *, timeout: float = 30.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            found = self.state(entity_id)
            return found if found is not None and found["state"] == state else None

        try:
            found: dict[str, Any] = self._wait(reached, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{entity_id} is {self.state(entity_id)}, not {state}: {exc}") from None
        return found

    def template(self, template: str) -> str:
        return str(self._request("POST", "/api/template", body={"template": template}))

    def wait_attribute(
        self, entity_id: str, name: str, value: Any, *, timeout: float = 30.0
    ) -> dict[str, Any]:
        """The entity's attributes once `name` is `value`."""

        def reached() -> dict[str, Any] | None:
            found = self.state(entity_id)
            return found["attributes"] if found and found["attributes"].get(name) == value else None

        attributes: dict[str, Any] = self._wait(reached, timeout)
        return attributes
