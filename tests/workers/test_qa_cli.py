"""`vigil ask`, `describe`, `chat` with a tiny real model, as a user runs them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from vigil.cli import cli
from vigil.config.settings import DatabaseSettings
from vigil.formats.probe import probe
from vigil.media.registry import ensure_source, register_file
from vigil.store.db import make_engine, session_factory, write_session
from vigil.store.schema import Media
from workers.testing.clips import write_clip_mp4v, write_image


@pytest.fixture
def env(tmp_path: Path, sqlite_url: str, tiny_llava: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key in list(os.environ):
        if key.startswith("VIGIL_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return {
        "VIGIL_DATABASE__URL": sqlite_url,
        "VIGIL_MODEL__ID": str(tiny_llava),
        "VIGIL_MODEL__FRAMES_PER_WINDOW": "4",
    }


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip_mp4v(tmp_path / "clip.mp4", seconds=2, fps=10, size=(96, 72))


def invoke(args: list[str], env: dict[str, str], stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli, args, env=env, input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def test_ask_answers_within_the_token_bound(env: dict[str, str], clip: Path) -> None:
    from workers.model.loading import load_model

    tokenizer = load_model(env["VIGIL_MODEL__ID"]).tokenizer
    answer = invoke(["ask", str(clip), "What is moving?", "--max-tokens", "5"], env).strip()
    assert len(tokenizer.encode(answer, add_special_tokens=False)) <= 5 + 2


def test_ask_which_ranks_several_clips_by_p_yes(env: dict[str, str], clip: Path, tmp_path: Path) -> None:
    image = write_image(tmp_path / "snap.png", size=(64, 48))
    lines = invoke(["ask", str(clip), str(image), "a person walking", "--which"], env).strip().splitlines()
    scores = [float(line.split()[0]) for line in lines]
    assert sorted({line.split()[1] for line in lines}) == sorted([str(clip), str(image)])
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)


def test_describe_stores_the_caption_on_the_media_row(
    env: dict[str, str], clip: Path, sqlite_url: str
) -> None:
    factory = session_factory(make_engine(DatabaseSettings(url=sqlite_url)))
    with write_session(factory) as session:
        source_id = ensure_source(session, "drop", clip.parent).id
    media_id = register_file(
        factory, source_id=source_id, root=clip.parent, path=clip, info=probe(clip)
    ).media_id
    caption = invoke(["describe", str(media_id), "--store", "--max-tokens", "4"], env).strip()
    with factory() as session:
        stored = session.scalar(select(Media.caption).where(Media.id == media_id))
    assert stored is not None and stored.strip() == caption


def test_chat_holds_several_turns_until_end_of_input(env: dict[str, str], clip: Path) -> None:
    output = invoke(["chat", str(clip), "--max-tokens", "3"], env, stdin="first?\nsecond?\n\nnot asked\n")
    assert len(output.strip().splitlines()) >= 1
    assert "not asked" not in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "missing.mp4", "why?"], "no such file"),
        (["ask", "a.mp4", "b.mp4", "why?"], "--which"),
        (["describe", "424242"], "no media with id 424242"),
    ],
)
def test_bad_media_arguments_are_clear_errors(
    env: dict[str, str], clip: Path, args: list[str], message: str
) -> None:
    if args[0] == "ask" and "b.mp4" in args:
        args = ["ask", str(clip), str(clip), "why?"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2 and message in result.output


def test_ask_about_a_reference_image(env: dict[str, str], clip: Path, tmp_path: Path) -> None:
    """`--image` puts the example after the clip: the answer is the greedy answer to that very prompt."""
    from vigil.formats.reference_images import check_reference
    from workers.model.clip import load_clip
    from workers.model.generation import answer_token_ids, decode_text
    from workers.model.loading import load_model
    from workers.model.suffixes import ReferenceImage

    front = write_image(tmp_path / "front.jpg", size=(120, 90))
    answer = invoke(["ask", str(clip), "Is this my car?", "--image", str(front), "--max-tokens", "5"], env)
    loaded = load_model(env["VIGIL_MODEL__ID"])
    frames = load_clip(loaded, clip, frames=4)
    ref = ReferenceImage(check_reference(front).sha256, front)
    tokens = answer_token_ids(
        loaded, frames.rgb, fps=frames.fps, question="Is this my car?", references=[ref], max_new_tokens=5
    )
    assert answer.strip() == decode_text(loaded, tokens)
    ranked = invoke(["ask", str(clip), "my car", "--which", "--image", str(front)], env).split()
    assert ranked[1] == str(clip) and 0 < float(ranked[0]) < 1


def test_ask_refuses_a_bad_reference_image_in_one_line(
    env: dict[str, str], clip: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "front.jpg"
    bad.write_text("not a picture")
    result = CliRunner().invoke(cli, ["ask", str(clip), "Is this my car?", "--image", str(bad)], env=env)
    assert result.exit_code == 2
    assert "front.jpg: does not decode as an image" in result.output
    assert "Traceback" not in result.output
