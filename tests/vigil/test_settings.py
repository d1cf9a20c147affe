from __future__ import annotations

import re
from pathlib import Path

import pytest

from vigil.config.settings import load_settings
from vigil.config.streams import STREAM_STATIC_GATE
from vigil.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_embedded_mode_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    settings = load_settings()
    data_dir = tmp_path / "xdg" / "vigil"
    assert settings.storage.data_dir == data_dir
    assert settings.database.url == f"sqlite:///{data_dir / 'vigil.db'}"
    assert settings.broker.url == f"sqla+sqlite:///{data_dir / 'vigil-broker.db'}"
    assert settings.storage.thumbnails_dir == data_dir / "thumbnails"
    assert settings.model.device == "auto"
    assert settings.broker.task_time_limit_s < settings.broker.visibility_timeout_s


def test_toml_file_then_environment_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "vigil.toml"
    config.write_text(
        """
[database]
url = "sqlite:///from-file.db"
[model]
id = "from-file"
frames_per_window = 16
[[targets]]
name = "van"
description = "a white delivery van"
threshold = 0.7
[[watch.sources]]
name = "cam1"
path = "/srv/ftp/cam1"
"""
    )
    monkeypatch.setenv("VIGIL_MODEL__ID", "from-env")
    settings = load_settings(config)
    assert settings.database.url == "sqlite:///from-file.db"
    assert settings.model.id == "from-env"
    assert settings.model.frames_per_window == 16
    assert settings.targets[0].threshold == 0.7
    assert settings.watch.sources[0].path == Path("/srv/ftp/cam1")
    assert "*.part" in settings.watch.sources[0].ignore


def test_a_stream_sources_static_gate_is_on_unless_it_sets_one(tmp_path: Path) -> None:
    """A stream (`url`) is a fixed camera: its gate is on at STREAM_STATIC_GATE; a folder's stays off, and
    a source's own value wins either way (0 turns a stream's gate off)."""
    config = tmp_path / "vigil.toml"
    sources = [
        ("folder", ""),
        ("stream", 'url = "rtsp://cam:554/s"'),
        ("stream-off", 'url = "rtsp://cam:554/s"\nstatic_gate = 0'),
        ("stream-4", 'url = "rtsp://cam:554/s"\nstatic_gate = 4'),
        ("folder-8", "static_gate = 8"),
    ]
    config.write_text(
        "".join(f'[[watch.sources]]\nname = "{n}"\npath = "/srv/{n}"\n{extra}\n' for n, extra in sources)
    )
    got = {s.name: s.static_gate for s in load_settings(config).watch.sources}
    assert got == {
        "folder": 0.0,
        "stream": STREAM_STATIC_GATE,
        "stream-off": 0.0,
        "stream-4": 4.0,
        "folder-8": 8.0,
    }
    assert STREAM_STATIC_GATE > 0


def test_vigil_toml_in_working_directory_is_used_by_default(tmp_path: Path) -> None:
    (tmp_path / "vigil.toml").write_text('[model]\nid = "local-default"\n')
    assert load_settings().model.id == "local-default"


def test_vigil_config_variable_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text('[model]\nid = "via-env"\n')
    monkeypatch.setenv("VIGIL_CONFIG", str(other))
    assert load_settings().model.id == "via-env"


def test_every_error_is_reported_with_its_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(
        """
[model]
frames_per_window = 0
devise = "cuda"
[[targets]]
name = "a b"
description = "x"
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert "model.frames_per_window" in message
    assert "model.devise: unknown key (did you mean `device`?)" in message
    assert "targets[0].name" in message
    assert "targets[0].description" in message


def test_unknown_environment_section_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_MODEL__DEVISE", "cuda")
    with pytest.raises(ConfigError, match=r"model\.devise"):
        load_settings()


def test_toml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[model\nid = 1\n")
    with pytest.raises(ConfigError, match="broken.toml"):
        load_settings(config)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings("nope.toml")


@pytest.mark.parametrize(
    ("section", "body", "key"),
    [
        ("broker", "task_time_limit_s = 10\nvisibility_timeout_s = 5", "broker"),
        ("model", 'device = "gpu"', "model.device"),
        ("alerts", '[[alerts.channels]]\nname = "hook"\nkind = "webhook"', "alerts.channels[hook]"),
    ],
)
def test_cross_field_rules(tmp_path: Path, section: str, body: str, key: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(body if section == "alerts" else f"[{section}]\n{body}\n")
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_settings(config)
