"""`python -m recorder [--config PATH]`: the recorder as its own process (torch-free)."""

from __future__ import annotations

import argparse
import logging
import sys

from recorder.service import RecorderService
from vigil.config.settings import Settings, load_settings
from vigil.errors import ConfigError
from vigil.ops.celery_app import make_celery
from vigil.ops.enqueue import Enqueuer
from vigil.ops.logs import configure_logging
from vigil.store.db import make_engine, session_factory
from vigil.store.migrate import ensure_migrated

log = logging.getLogger("recorder")


def run_recorder(settings: Settings) -> int:
    """Record every stream source until SIGTERM/SIGINT (`vigil recorder` calls this). Exit status."""
    configure_logging(settings.log, process_name="recorder")
    if not any(s.url for s in settings.watch.sources):
        print("recorder: no stream source (a [[watch.sources]] entry with a url)", file=sys.stderr)
        return 2
    engine = make_engine(settings.database)
    try:
        ensure_migrated(engine)
        factory = session_factory(engine)
        app = make_celery(settings)  # the camera_offline alerts' deliveries go to the queue
        RecorderService(settings, factory=factory, enqueuer=Enqueuer(app, factory)).run_forever()
        app.close()
    except ConfigError as exc:
        print(f"recorder: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    log.info("recorder exited cleanly")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recorder", description=__doc__)
    parser.add_argument("--config", help="TOML settings file (else $VIGIL_CONFIG, else ./vigil.toml)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"recorder: {exc}", file=sys.stderr)
        return 2
    return run_recorder(settings)


if __name__ == "__main__":
    sys.exit(main())
