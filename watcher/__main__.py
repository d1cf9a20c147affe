"""`python -m watcher [--config PATH]`: the watcher as its own process (torch-free)."""

from __future__ import annotations

import argparse
import logging
import sys

from vigil.config.settings import Settings, load_settings
from vigil.errors import ConfigError
from vigil.ops.celery_app import make_celery
from vigil.ops.enqueue import Enqueuer
from vigil.ops.logs import configure_logging
from vigil.store.db import make_engine, session_factory
from vigil.store.migrate import ensure_migrated
from watcher.service import WatcherService

log = logging.getLogger("watcher")


def run_watcher(settings: Settings) -> int:
    """Run the watcher in this process until SIGTERM/SIGINT (`vigil watcher` calls this). Exit status."""
    configure_logging(settings.log, process_name="watcher")
    engine = make_engine(settings.database)
    try:
        ensure_migrated(engine)
        factory = session_factory(engine)
        app = make_celery(settings)
        service = WatcherService(settings, factory=factory, enqueuer=Enqueuer(app, factory))
        service.run_forever()
        app.close()
    except ConfigError as exc:
        print(f"watcher: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    log.info("watcher exited cleanly")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m watcher", description=__doc__)
    parser.add_argument("--config", help="TOML settings file (else $VIGIL_CONFIG, else ./vigil.toml)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"watcher: {exc}", file=sys.stderr)
        return 2
    return run_watcher(settings)


if __name__ == "__main__":
    sys.exit(main())
