"""What a worker process holds for its lifetime: settings, database, Celery app and, lazily, the model."""

from __future__ import annotations

import logging
import threading
from functools import cached_property

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from vigil.config.settings import Settings
from vigil.ops.celery_app import make_celery
from vigil.ops.contracts import Recognizer
from vigil.ops.enqueue import Enqueuer
from vigil.store.db import make_engine, session_factory

log = logging.getLogger(__name__)


class WorkerRuntime:
    def __init__(
        self, settings: Settings, *, app: Celery | None = None, recognizer: Recognizer | None = None
    ) -> None:
        self.settings = settings
        self.app = app or make_celery(settings)
        self._model_lock = threading.Lock()
        self._recognizer = recognizer

    @cached_property
    def factory(self) -> sessionmaker[Session]:
        return session_factory(make_engine(self.settings.database))

    @cached_property
    def enqueuer(self) -> Enqueuer:
        return Enqueuer(self.app, self.factory)

    def recognizer(self) -> Recognizer:
        """The model, loaded on first use and kept for the life of the process."""
        with self._model_lock:
            if self._recognizer is None:
                self._recognizer = self._load()
            return self._recognizer

    def _load(self) -> Recognizer:
        import sys

        import torch

        from workers.analysis.pipeline import WindowRecognizer
        from workers.decode.prefetch import GIL_SWITCH_INTERVAL_S, model_threads, usable_cores
        from workers.model.loading import load_configured_model

        prefetch = self.settings.model.prefetch_windows
        torch.set_num_threads(model_threads(usable_cores(), configured=self.settings.model.threads))
        if prefetch > 0:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        loaded = load_configured_model(self.settings.model)
        storage = self.settings.storage
        return WindowRecognizer(
            loaded,
            self.settings.model,
            thumbnails_dir=storage.thumbnails_dir,
            references_dir=storage.references_dir,
        )
