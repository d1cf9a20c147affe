from __future__ import annotations

import os
from pathlib import Path

import pytest

from vigil.config.settings import WebSettings, load_settings
from vigil.errors import ConfigError
from vigil.web.urls import media_links, media_page_path, thumbnail_path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_web_is_on_at_loopback_by_default() -> None:
    web = load_settings().web
    assert (web.enabled, web.host, web.port) == (True, "127.0.0.1", 8765)
    assert web.base_url is None and web.password is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "vigil.example.org"])
def test_binding_off_loopback_needs_a_password(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_WEB__HOST", host)
    with pytest.raises(ConfigError, match="web: host .* set web.password"):
        load_settings()
    monkeypatch.setenv("VIGIL_WEB__PASSWORD", "s3cret")
    assert load_settings().web.host == host


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.2", "::1"])
def test_loopback_needs_no_password(host: str) -> None:
    assert WebSettings(host=host).password is None


@pytest.mark.parametrize(
    "url", ["ftp://x.org", "javascript:alert(1)", "https://x.org/?a=1", "https://x.org/#f", "x.org"]
)
def test_base_url_must_be_http(url: str) -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        WebSettings(base_url=url)


def test_links_are_built_from_base_url_and_ids_only() -> None:
    assert media_links(None, media_id=3, detection_id=9) == {}
    assert media_links("https://v.example.org/vigil/", media_id=3, detection_id=9) == {
        "media_url": "https://v.example.org/vigil/media/3",
        "thumbnail_url": "https://v.example.org/vigil/detections/9/thumbnail",
    }
    assert media_links("http://h:8765", media_id=3, detection_id=None) == {
        "media_url": "http://h:8765/media/3"
    }
    assert media_page_path(7) == "/media/7" and thumbnail_path(8) == "/detections/8/thumbnail"
