"""`vigil ask`, `vigil describe`, `vigil chat`: video QA, captioning and dialogue about a clip.

MEDIA is a file path or the id of a media row. The model loads once per command; the video is encoded
once per clip, also across all the turns of a chat.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from sqlalchemy import update

from vigil.cli.context import AppContext, pass_app
from vigil.cli.processes import model_option
from vigil.errors import ConfigError

frames_option = click.option(
    "--frames",
    type=click.IntRange(1, 256),
    help="Frames sampled from the clip (default: model.frames_per_window).",
)
tokens_option = click.option("--max-tokens", type=click.IntRange(1, 4096), default=256, show_default=True)
image_option = click.option(
    "--image",
    "images",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A reference image shown to the model after the clip (repeat for several): 'is this my car?'.",
)


def reference_images(images: tuple[Path, ...]) -> list[Any]:
    """Checked reference images (one-line errors) for a one-off question."""
    if not images:
        return []
    from vigil.formats.reference_images import check_references
    from workers.model.suffixes import ReferenceImage

    infos = check_references(list(images))
    return [ReferenceImage(info.sha256, path) for path, info in zip(images, infos, strict=True)]


def resolve_media(app: AppContext, media: str) -> tuple[Path, int | None]:
    """A path, or a media id looked up in the database."""
    if media.isdigit() and not Path(media).exists():
        from vigil.store.schema import Media

        app.require_migrated(initialise=False)
        with app.factory() as session:
            row = session.get(Media, int(media))
        if row is None:
            raise ConfigError(f"no media with id {media}")
        return Path(row.path), row.id
    path = Path(media)
    if not path.is_file():
        raise ConfigError(f"{media}: no such file (give a path or a media id)")
    return path, None


def load(app: AppContext, model: str | None) -> Any:
    from workers.model.loading import load_configured_model

    app.override("model", id=model)
    return load_configured_model(app.settings.model)


def streamer() -> Callable[[str], None] | None:
    """Print pieces as they come when the terminal is interactive; otherwise print the answer at the end."""
    if not sys.stdout.isatty():
        return None
    return lambda piece: click.echo(piece, nl=False)


def emit(answer: str, stream: Callable[[str], None] | None) -> None:
    click.echo("" if stream else answer)


@click.command("ask")
@click.argument("media", nargs=-1, required=True)
@click.argument("question")
@click.option("--which", is_flag=True, help="Several clips: rank them by P(yes) that each shows QUESTION.")
@image_option
@model_option
@frames_option
@tokens_option
@pass_app
def ask_command(
    app: AppContext,
    media: tuple[str, ...],
    question: str,
    which: bool,
    images: tuple[Path, ...],
    model: str | None,
    frames: int | None,
    max_tokens: int,
) -> None:
    """Answer a free QUESTION about MEDIA, e.g. `vigil ask clip.mp4 "What is the person carrying?"`, or
    about an example: `vigil ask clip.mp4 "Is this my car?" --image front.jpg`.

    With several clips and --which, QUESTION is a description ("a man walking a dog") and the clips are
    ranked by the calibrated P(yes) that each shows it (with --image: the thing in the images).
    """
    if len(media) > 1 and not which:
        raise ConfigError("several clips need --which (rank them by how well each shows QUESTION)")
    paths = [resolve_media(app, m)[0] for m in media]
    refs = reference_images(images)
    loaded = load(app, model)
    from workers.model.clip import load_clip
    from workers.model.dialogue import ask
    from workers.model.scoring import score_targets

    n = frames or app.settings.model.frames_per_window
    if which:
        ranked = []
        for path in paths:
            clip = load_clip(loaded, path, frames=n)
            score = score_targets(loaded, clip.rgb, fps=clip.fps, descriptions=[question], references=[refs])
            ranked.append((score[0], path))
        for p, path in sorted(ranked, key=lambda r: r[0], reverse=True):
            click.echo(f"{p:.3f}  {path}")
        return
    clip = load_clip(loaded, paths[0], frames=n)
    stream = streamer()
    answer = ask(
        loaded,
        clip.rgb,
        fps=clip.fps,
        question=question,
        references=refs,
        max_new_tokens=max_tokens,
        on_token=stream,
    )
    emit(answer, stream)


@click.command("describe")
@click.argument("media")
@click.option("--store", is_flag=True, help="Save the caption on the media row (MEDIA must be a media id).")
@model_option
@frames_option
@tokens_option
@pass_app
def describe_command(
    app: AppContext, media: str, store: bool, model: str | None, frames: int | None, max_tokens: int
) -> None:
    """Caption MEDIA in a few sentences."""
    path, media_id = resolve_media(app, media)
    if store and media_id is None:
        raise ConfigError("--store needs a media id, not a path")
    loaded = load(app, model)
    from workers.model.clip import load_clip
    from workers.model.dialogue import describe

    clip = load_clip(loaded, path, frames=frames or app.settings.model.frames_per_window)
    stream = streamer()
    caption = describe(loaded, clip.rgb, fps=clip.fps, max_new_tokens=max_tokens, on_token=stream)
    emit(caption, stream)
    if store:
        from vigil.store.db import write_session
        from vigil.store.schema import Media

        with write_session(app.factory) as session:
            session.execute(update(Media).where(Media.id == media_id).values(caption=caption))


@click.command("chat")
@click.argument("media")
@model_option
@frames_option
@tokens_option
@pass_app
def chat_command(app: AppContext, media: str, model: str | None, frames: int | None, max_tokens: int) -> None:
    """A dialogue about MEDIA in the terminal; the video is encoded once for the whole conversation.

    Type a question per line; an empty line, `exit` or end of input ends the chat.
    """
    path, _ = resolve_media(app, media)
    loaded = load(app, model)
    from workers.model.clip import load_clip
    from workers.model.dialogue import Conversation

    clip = load_clip(loaded, path, frames=frames or app.settings.model.frames_per_window)
    conversation = Conversation(loaded, clip.rgb, fps=clip.fps)
    interactive = sys.stdin.isatty()
    stream = streamer()
    while True:
        try:
            question = input("you> " if interactive else "")
        except EOFError:
            break
        if question.strip() in ("", "exit", "quit"):
            break
        if interactive:
            click.echo("vigil> ", nl=False)
        answer = conversation.ask(question, max_new_tokens=max_tokens, on_token=stream)
        emit(answer, stream)


def register(cli: click.Group) -> None:
    cli.add_command(ask_command)
    cli.add_command(describe_command)
    cli.add_command(chat_command)
