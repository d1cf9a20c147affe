"""One analysis, start to finish, with every failure sorted into a terminal state or a retry."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded

from vigil.alerts.evaluation import evaluate_analysis
from vigil.errors import MediaError, ModelError, OutOfMemory, TransientError
from vigil.media.dropfolder import finalize_file
from vigil.media.lifecycle import (
    Claim,
    LeaseKeeper,
    LostClaim,
    claim,
    give_up_if_exhausted,
    mark_failed,
    mark_superseded,
    release,
)
from vigil.ops import metrics
from vigil.ops.contracts import AnalyzePayload, Recognition, Recognizer
from vigil.terminal import plural
from workers.analysis import storing
from workers.analysis.runtime import WorkerRuntime
from workers.analysis.storing import store_results
from workers.analysis.version import FileRead, VersionChanged, check_after, check_before

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisOutcome:
    status: str  # done | failed | skipped | superseded | retry | lost
    retry_in_s: float | None = None
    frames_per_window: int | None = None
    analysis_id: int | None = None


def analyze_media(runtime: WorkerRuntime, payload: AnalyzePayload) -> AnalysisOutcome:
    outcome = _analyze_media(runtime, payload)
    metrics.record_outcome(runtime.factory, payload.media_id, outcome.status)
    return outcome


def _analyze_media(runtime: WorkerRuntime, payload: AnalyzePayload) -> AnalysisOutcome:
    work = runtime.settings.work
    taken = claim(runtime.factory, payload.media_id, lease_s=work.lease_s)
    if taken is None:
        log.info("media %d: not queued (already claimed or done), nothing to do", payload.media_id)
        return AnalysisOutcome("skipped")
    if give_up_if_exhausted(runtime.factory, taken, max_attempts=work.max_attempts):
        _finalize(runtime, taken.media_id)
        return AnalysisOutcome("failed")
    log.info("media %d: analysing %s (attempt %d)", taken.media_id, taken.path, taken.attempts)
    began = time.perf_counter()
    try:
        with LeaseKeeper(runtime.factory, taken, lease_s=work.lease_s):  # a model load can outlast a lease
            recognizer = runtime.recognizer()
    except (ModelError, TransientError) as exc:  # not this file's fault: its attempt is not counted
        release(runtime.factory, taken, error=f"model unavailable: {exc}", count_attempt=False)
        log.error("media %d: left queued, model cannot be loaded: %s", taken.media_id, exc)
        return AnalysisOutcome("retry", retry_in_s=60.0)
    except SoftTimeLimitExceeded:
        return _over_time(runtime, taken)
    try:
        with LeaseKeeper(runtime.factory, taken, lease_s=work.lease_s):
            recognition, read = _recognize_checked(recognizer, taken, payload)
        check_after(taken.path, read)
        analysis_id, deliveries = store_results(
            runtime.factory,
            taken,
            recognition,
            model_id=recognizer.model_id,
            template_version=recognizer.template_version,
            total_ms=(time.perf_counter() - began) * 1000,
            read=read,
            after_results=lambda session, analysis: evaluate_analysis(
                session, analysis, settings=runtime.settings
            ),
        )
    except VersionChanged as exc:
        try:  # no drop-folder step: the file on disk belongs to the next version
            mark_superseded(runtime.factory, taken, exc.reason)
        except LostClaim as lost:
            log.warning("%s; not marked superseded", lost)
            return AnalysisOutcome("lost")
        return AnalysisOutcome("superseded")
    except MediaError as exc:
        mark_failed(runtime.factory, taken, exc)
        _finalize(runtime, taken.media_id)
        return AnalysisOutcome("failed")
    except LostClaim as exc:
        log.warning("%s; results discarded", exc)
        return AnalysisOutcome("lost")
    except OutOfMemory as exc:
        fewer = max(1, (payload.frames_per_window or runtime.settings.model.frames_per_window) // 2)
        release(runtime.factory, taken, error=f"out of memory, retrying with {fewer} frames: {exc}")
        return _retry(taken.attempts, frames_per_window=fewer)
    except (TransientError, OSError) as exc:
        release(runtime.factory, taken, error=f"transient: {exc}")
        return _retry(taken.attempts)
    except SoftTimeLimitExceeded:
        return _over_time(runtime, taken)
    except Exception as exc:  # a bug or an unforeseen library error: retried, then failed with its text
        log.exception("media %d: unexpected error", taken.media_id)
        release(runtime.factory, taken, error=f"{type(exc).__name__}: {exc}")
        return _retry(taken.attempts)
    for delivery_id in deliveries:
        runtime.enqueuer.deliver(delivery_id)
    _finalize(runtime, taken.media_id)
    metrics.record_analysis(runtime.factory, analysis_id, taken.targets, recognition, began=began)
    log.info(
        "media %d done: %s, analysis %d, %s, %.0f ms",
        taken.media_id,
        taken.path,
        analysis_id,
        plural(recognition.windows, "window"),
        (time.perf_counter() - began) * 1000,
    )
    return AnalysisOutcome("done", analysis_id=analysis_id)


def _recognize_checked(
    recognizer: Recognizer, taken: Claim, payload: AnalyzePayload
) -> tuple[Recognition, FileRead | None]:
    """Recognise while the file's version is checked beside it (hashing up to 64 MiB), so decoding starts
    as soon as the claim is taken. A changed file is superseded whatever its decoding said, as when the
    check ran first; only the model work on a file that turns out changed is wasted, and that is rare."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-version-check") as pool:
        checked = pool.submit(check_before, taken.path, taken.registered)
        try:
            recognition = recognizer.recognize(
                taken.path,
                taken.info,
                taken.targets,
                media_id=taken.media_id,
                frames_per_window=payload.frames_per_window,
                static_gate=taken.static_gate,
            )
        except BaseException as exc:
            read = checked.result()  # raises VersionChanged first, when the file is not the claimed version
            if read is None and isinstance(exc, MediaError):
                # Gone from this worker's view only, perhaps: a missing or stale mount of the media share
                # on this machine. Retried (elsewhere, if other workers run) and failed with this reason
                # after work.max_attempts, never failed at once as if the file were unreadable.
                raise TransientError(
                    f"{taken.path} is not on this worker ({storing.WORKER_NAME}): its mount of the media "
                    "share is missing or stale, or the file was deleted"
                ) from exc
            raise
        return recognition, checked.result()


def _finalize(runtime: WorkerRuntime, media_id: int) -> None:
    """Drop-folder automation (move to done/ or failed/, sidecar) after the commit; never fails the task."""
    try:
        finalize_file(runtime.factory, runtime.settings, media_id)
    except (OSError, TransientError) as exc:
        log.error("media %d: analysed, but the drop-folder step failed: %s", media_id, exc)


def _over_time(runtime: WorkerRuntime, taken: Claim) -> AnalysisOutcome:
    """Celery's soft time limit, raised in this thread: a hung decode or an absurdly long file. The attempt
    counts, so it is retried and then failed with this reason, and the worker goes on to the next file."""
    limit = runtime.settings.broker.task_time_limit_s
    release(runtime.factory, taken, error=f"took longer than broker.task_time_limit_s ({limit:.0f} s)")
    log.error("media %d: attempt %d stopped at its time limit", taken.media_id, taken.attempts)
    return _retry(taken.attempts)


def _retry(attempts: int, *, frames_per_window: int | None = None) -> AnalysisOutcome:
    backoff = min(300.0, 5.0 * 2 ** (attempts - 1))
    return AnalysisOutcome("retry", retry_in_s=backoff, frames_per_window=frames_per_window)
