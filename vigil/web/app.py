"""The review page: a FastAPI application of server-rendered Jinja2 pages.

Reads go through the database's own sessions (plain def routes run in a thread pool, so a slow query never
stalls the server). The only writes are a verdict (POST /feedback) and a threshold (POST
/targets/NAME/threshold), each behind a CSRF token.
"""

from __future__ import annotations

import logging
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from vigil.config.services import secret_value
from vigil.config.settings import Settings
from vigil.errors import ConfigError
from vigil.feedback.calibration import DEFAULT_PRECISION, NotEnoughLabels, fit_threshold
from vigil.feedback.verdicts import apply_threshold, labels_from_feedback, record_verdict, settings_line
from vigil.formats.types import window_span
from vigil.store.db import write_session
from vigil.web import files, queries
from vigil.web.inputs import Index, OptionalRowId, RowId, parse_filter, row_id, validation_message
from vigil.web.login import BasicAuth, Throttle
from vigil.web.middleware import FILE_CSP, HostGuard, SecurityHeaders
from vigil.web.present import public_reason, visible_controls
from vigil.web.security import CSRF_FIELD, Signer, csrf_ok, csrf_token, load_secret, set_csrf_cookie
from vigil.web.urls import (
    DETECTION_THUMBNAIL,
    EVENTS_PAGE,
    MEDIA_FILE,
    MEDIA_PAGE,
    REFERENCE_IMAGE,
    TARGET_THRESHOLD,
    media_file_path,
    media_page_path,
    reference_image_path,
    target_threshold_path,
    thumbnail_path,
)

log = logging.getLogger(__name__)
# Every printed value goes through `visible_controls`: no stored name can reorder the text after it.
TEMPLATES = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        finalize=visible_controls,
    )
)
TEMPLATES.env.globals.update(
    media_page_path=media_page_path, media_file_path=media_file_path, thumbnail_path=thumbnail_path,
    reference_image_path=reference_image_path, target_threshold_path=target_threshold_path,
)  # fmt: skip
# The page's stylesheet and script, by name, with their content types (no inline code: the CSP forbids it).
STATIC_DIR = Path(__file__).parent / "static"
STATIC = {"vigil.css": "text/css; charset=utf-8", "vigil.js": "text/javascript; charset=utf-8"}


def heat(p: float) -> str:
    """The heat-map class of a P(yes) (vigil.css colours twentieths: near white for 0, orange-red for 1)."""
    return f"heat-{round(min(1.0, max(0.0, p)) * 20)}"


TEMPLATES.env.filters["heat"] = heat
TEMPLATES.env.globals["span"] = window_span
TEMPLATES.env.filters["iso"] = lambda t: t.astimezone(UTC).isoformat(timespec="seconds")
TEMPLATES.env.filters["reason"] = public_reason
FILE_HEADERS = {"Content-Security-Policy": FILE_CSP, "Cache-Control": "private, max-age=3600"}


def create_app(settings: Settings, factory: sessionmaker[Session]) -> FastAPI:
    app = FastAPI(title="Vigil", docs_url=None, redoc_url=None, openapi_url=None)
    file_owned = {t.name for t in settings.targets}
    thumbnails_dir = settings.storage.thumbnails_dir
    password = secret_value(settings.web.password)
    signer = Signer(load_secret(settings.storage.data_dir), password)

    def render(request: Request, name: str, **context: Any) -> HTMLResponse:
        context |= {"csrf_field": CSRF_FIELD, "csrf_token": csrf_token(request, signer)}
        response = TEMPLATES.TemplateResponse(request, name, context)
        set_csrf_cookie(request, response)
        return response

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        if name not in STATIC:
            raise HTTPException(404, f"no static file {name!r}")
        return FileResponse(STATIC_DIR / name, media_type=STATIC[name], headers={"Cache-Control": "no-cache"})

    @app.get("/", response_class=HTMLResponse)
    def timeline(request: Request) -> HTMLResponse:
        f = parse_filter(request.query_params)
        with factory() as session:
            rows, next_key = queries.timeline(session, f)
            targets, sources = queries.filter_choices(session)
        keep = {k: v for k, v in request.query_params.items() if k != "before" and v}
        older = f"/?{urlencode({**keep, 'before': next_key})}" if next_key else None
        newest = f"/?{urlencode(keep)}" if f.before else None
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return render(
            request, "timeline.html", rows=rows, f=f, targets=targets, sources=sources, older=older,
            newest=newest, here=here,
        )  # fmt: skip

    @app.get(EVENTS_PAGE, response_class=HTMLResponse)
    def events(request: Request, before: OptionalRowId = None) -> HTMLResponse:
        with factory() as session:
            rows, next_key = queries.event_alerts(session, before=before)
        older = f"{EVENTS_PAGE}?{urlencode({'before': next_key})}" if next_key else None
        return render(request, "events.html", rows=rows, older=older, newest=EVENTS_PAGE if before else None)

    @app.get(MEDIA_PAGE, response_class=HTMLResponse)
    def media(request: Request, media_id: RowId, analysis: OptionalRowId = None) -> HTMLResponse:
        with factory() as session:
            page = queries.media_page(session, media_id, analysis)
            if page is None:
                raise HTTPException(404, f"no media {media_id}")
            unplayable = why_not_played(session, page)
            return render(
                request, "media.html", page=page, unplayable=unplayable, here=media_page_path(media_id)
            )

    @app.get(MEDIA_FILE)
    def media_file(media_id: RowId) -> Response:
        with factory() as session:
            try:
                checked = files.media_file(session, media_id)
            except files.NotThisVersion as exc:
                raise HTTPException(
                    410, f"media {media_id}: not this version's file any more: {exc.reason}"
                ) from None
        if checked is None:
            raise HTTPException(404, f"no file for media {media_id}")
        return files.CheckedFileResponse(checked, headers=FILE_HEADERS)  # answers Range requests with 206

    @app.get(DETECTION_THUMBNAIL)
    def thumbnail(detection_id: RowId) -> Response:
        with factory() as session:
            found = files.thumbnail_file(session, detection_id, thumbnails_dir)
        if found is None:
            raise HTTPException(404, f"no thumbnail for detection {detection_id}")
        return Response(found[0], media_type=found[1], headers=FILE_HEADERS)

    @app.get(REFERENCE_IMAGE)
    def reference_image(name: str, index: Index) -> Response:
        with factory() as session:
            found = files.reference_file(session, name, index, settings.storage.references_dir)
        if found is None:
            raise HTTPException(404, f"no reference image {index} for target {name[:64]!r}")
        return Response(found[0], media_type=found[1], headers=FILE_HEADERS)

    @app.get("/targets", response_class=HTMLResponse)
    def targets(request: Request, precision: float = DEFAULT_PRECISION) -> HTMLResponse:
        if not 0 < precision <= 1:
            raise HTTPException(400, "precision: must be in (0, 1]")
        cards = []
        with factory() as session:
            for scores in queries.target_histograms(session):
                try:
                    fit, refusal = (
                        fit_threshold(labels_from_feedback(session, scores.target.id), precision=precision),
                        None,
                    )
                except NotEnoughLabels as exc:
                    fit, refusal = None, str(exc)
                owned = scores.target.name in file_owned
                line = (
                    settings_line(scores.target.name, fit.threshold)
                    if owned and fit and fit.threshold is not None
                    else None
                )
                cards.append({"scores": scores, "fit": fit, "refusal": refusal, "owned": owned, "line": line})
        return render(request, "targets.html", cards=cards, precision=precision)  # fmt: skip

    async def checked_form(request: Request) -> Any:
        form = await request.form()
        if not csrf_ok(request, form.get(CSRF_FIELD), signer):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
        return form

    @app.post("/feedback")
    async def feedback(request: Request) -> Response:
        form = await checked_form(request)
        detection_id = row_id(form.get("detection_id"), "detection_id")
        alert_id = row_id(form["alert_id"], "alert_id") if form.get("alert_id") else None
        verdict, note = str(form.get("verdict", "")), str(form.get("note") or "")
        if "\x00" in note or len(note) > 2000:
            raise HTTPException(400, "note: at most 2000 characters, no NUL")
        try:
            with write_session(factory) as session:
                record_verdict(
                    session, detection_id=detection_id, verdict=verdict, note=note, alert_id=alert_id
                )
        except ConfigError as exc:
            raise HTTPException(400, str(exc)) from None
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"detection_id": detection_id, "verdict": verdict})
        return RedirectResponse(safe_next(form.get("next")), status_code=303)  # fmt: skip

    @app.post(TARGET_THRESHOLD)
    async def threshold(request: Request, name: str) -> Response:
        form = await checked_form(request)
        try:
            value = float(str(form.get("threshold", "")))
            with write_session(factory) as session:
                apply_threshold(session, target_name=name, threshold=value, file_owned=file_owned)
        except ValueError:
            raise HTTPException(400, "threshold must be a number") from None
        except ConfigError as exc:
            raise HTTPException(400, str(exc)) from None
        return RedirectResponse(safe_next(form.get("next")) or "/targets", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def one_line(request: Request, exc: StarletteHTTPException) -> Response:
        return plain(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError) -> Response:
        return plain(422, validation_message(list(exc.errors())))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return plain(500, "internal error (the server's log says more)")

    if password is not None:
        app.add_middleware(BasicAuth, password=password, signer=signer, throttle=Throttle())
    app.add_middleware(HostGuard, allowed=settings.web.hosts())  # before any route or password check
    app.add_middleware(SecurityHeaders, authenticated=password is not None)  # on every answer, 400s too
    return app


def plain(status: int, detail: str, headers: Any = None) -> Response:
    """A one-line text answer; names in it cannot reorder the line."""
    text = visible_controls(detail.replace("\n", " ").replace("\x00", ""))[:300]
    return Response(f"{status}: {text}\n", status_code=status, media_type="text/plain", headers=headers)


def why_not_played(session: Session, page: queries.MediaPage) -> str | None:
    """Why the page shows no player (an empty or unreadable file, a replaced or missing one), or None."""
    m = page.media
    if m.size_bytes == 0:
        return "The file is empty"
    if m.width is None and m.status in ("failed", "skipped"):
        return "The file was never read as a video or image"
    try:
        found = files.media_file(session, m.id)
    except files.NotThisVersion as exc:
        return f"The file on disk is no longer this version ({exc.reason})"
    return None if found is not None else "The file is no longer on disk"


def safe_next(value: object) -> str:
    """Redirect only to a path on this site."""
    text = str(value or "/")
    return text if text.startswith("/") and not text.startswith("//") and "\\" not in text else "/"
