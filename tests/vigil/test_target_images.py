"""Targets by example: reference images checked, copied under their content hash, listed and versioned."""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from vigil.cli import cli
from vigil.config.settings import DatabaseSettings, load_settings
from vigil.errors import ConfigError
from vigil.formats.reference_images import MAX_REFERENCE_BYTES, check_reference
from vigil.store.db import make_engine, session_factory
from vigil.store.schema import Target
from workers.testing.clips import write_image


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VIGIL_DATABASE__URL", f"sqlite:///{tmp_path / 'vigil.db'}")
    monkeypatch.setenv("VIGIL_STORAGE__DATA_DIR", str(tmp_path / "vigil-data"))
    return tmp_path


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def refused(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.output


def target_row(workdir: Path, name: str) -> Target:
    factory = session_factory(make_engine(DatabaseSettings(url=f"sqlite:///{workdir / 'vigil.db'}")))
    with factory() as session:
        row = session.scalar(select(Target).where(Target.name == name))
        assert row is not None
        session.expunge(row)
        return row


def test_add_copies_images_under_their_hash_and_survives_the_original_moving(workdir: Path) -> None:
    front = write_image(workdir / "front.jpg", size=(160, 120))
    side = write_image(workdir / "side.png", size=(120, 90))
    out = run("targets", "add", "mycar", "my car", "--image", str(front), "--image", str(side))
    assert "2 reference image(s)" in out
    row = target_row(workdir, "mycar")
    digest = hashlib.sha256(front.read_bytes()).hexdigest()
    stored = workdir / "vigil-data" / "references" / f"{digest}.jpg"
    assert [i["name"] for i in row.images] == ["front.jpg", "side.png"]
    assert row.images[0]["file"] == stored.name
    assert (row.images[0]["width"], row.images[0]["height"]) == (160, 120)
    assert stored.read_bytes() == front.read_bytes()
    front.unlink()
    side.rename(workdir / "elsewhere.png")
    listed = run("targets", "list")
    assert "image front.jpg 160x120" in listed and "image side.png 120x90" in listed
    assert "missing" not in listed


def test_changing_images_is_a_new_prompt_version(workdir: Path) -> None:
    one = write_image(workdir / "one.png", size=(100, 80))
    two = write_image(workdir / "two.png", size=(80, 100))
    run("targets", "add", "dog", "our dog", "--image", str(one))
    assert target_row(workdir, "dog").prompt_version == 1
    run("targets", "add", "dog", "our dog", "--image", str(one), "--threshold", "0.7")
    assert target_row(workdir, "dog").prompt_version == 1  # same pictures, same prompt
    run("targets", "add", "dog", "our dog", "--image", str(two))
    assert target_row(workdir, "dog").prompt_version == 2
    run("targets", "add", "dog", "our dog")
    row = target_row(workdir, "dog")
    assert row.prompt_version == 3 and row.images == []


def test_config_file_images_are_relative_to_it(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("VIGIL_DATABASE__URL", "VIGIL_STORAGE__DATA_DIR"):  # the file says where, this time
        monkeypatch.delenv(key)
    conf_dir = workdir / "conf"
    (conf_dir / "refs").mkdir(parents=True)
    write_image(conf_dir / "refs" / "van.png", size=(120, 90))
    toml = conf_dir / "vigil.toml"
    toml.write_text(
        f'[database]\nurl = "sqlite:///{workdir / "vigil.db"}"\n'
        f'[storage]\ndata_dir = "{workdir / "data"}"\n'
        '[[targets]]\nname = "van"\ndescription = "the neighbour\'s van"\nimages = ["refs/van.png"]\n'
    )
    settings = load_settings(toml)
    assert settings.targets[0].images == [conf_dir / "refs" / "van.png"]
    assert "1 target(s)" in run("--config", str(toml), "config", "check")
    run("--config", str(toml), "db", "upgrade")
    listed = run("--config", str(toml), "targets", "list")  # the settings' targets are mirrored first
    assert "image van.png 120x90" in listed
    assert len(list((workdir / "data" / "references").iterdir())) == 1


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height; the pixels compress to almost nothing (a bomb)."""
    raw = zlib.compress(b"\x00" * ((width + 1) * height), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))
    return path


def _bad_references(folder: Path) -> list[tuple[Path, str]]:
    good = write_image(folder / "good.jpg", size=(160, 120))
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    text = folder / "notes.jpg"
    text.write_text("not a picture\n" * 50)
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    big = folder / "big.png"
    big.write_bytes(b"\x89PNG" + b"\x00" * (MAX_REFERENCE_BYTES + 10))
    tiny = write_image(folder / "tiny.png", size=(20, 20))
    thin = folder / "thin.png"
    cv2.imwrite(str(thin), np.zeros((40, 500, 3), dtype=np.uint8))
    bomb = _png_header_only(folder / "bomb.png", 12000, 12000)
    unreadable = write_image(folder / "locked.png", size=(64, 64))
    unreadable.chmod(0)
    return [
        (folder / "absent.jpg", "no such file"),
        (folder / "clip.mp4", "not an image file"),
        (truncated, "does not decode"),
        (text, "does not decode"),
        (empty, "empty file"),
        (big, "larger than 20 MB"),
        (tiny, "smaller than 32 px"),
        (thin, "more elongated than 10:1"),
        (bomb, "larger than 8192 px"),
        *([] if os.geteuid() == 0 else [(unreadable, "cannot read")]),
    ]


def test_bad_reference_images_get_one_line_errors(workdir: Path) -> None:
    (workdir / "clip.mp4").write_bytes(b"x" * 100)
    run("db", "upgrade")
    for path, message in _bad_references(workdir):
        with pytest.raises(ConfigError, match=message):
            check_reference(path)
        output = refused("targets", "add", "thing", "a thing", "--image", str(path))
        assert message in output and "Traceback" not in output
        assert len([line for line in output.splitlines() if "images" in line]) == 1
    assert "no targets" in run("targets", "list")


def test_too_many_or_repeated_images_are_refused(workdir: Path) -> None:
    pics = [write_image(workdir / f"p{i}.png", size=(64 + i, 64)) for i in range(5)]
    many = [arg for p in pics for arg in ("--image", str(p))]
    assert "at most 4 reference images" in refused("targets", "add", "thing", "a thing", *many)
    twice = ["--image", str(pics[0]), "--image", str(pics[0])]
    assert "the same reference image is given twice" in refused("targets", "add", "thing", "a thing", *twice)


def test_config_check_names_the_bad_image(workdir: Path) -> None:
    (workdir / "broken.jpg").write_text("nope")
    (workdir / "vigil.toml").write_text(
        '[[targets]]\nname = "van"\ndescription = "a van"\nimages = ["broken.jpg"]\n'
    )
    output = refused("config", "check")
    assert "vigil.toml: targets[van].images: " in output
    assert "broken.jpg: does not decode as an image" in output
