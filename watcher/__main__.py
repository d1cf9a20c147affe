"""`python -m watcher [--config PATH]`: the watcher as its own process (torch-free)."""

from __future__ import annotations

import argparse
import logging
import sys

from vigil.celery_app import make_celery
from vigil.db import make_engine, session_factory
from vigil.enqueue import Enqueuer
from vigil.errors import ConfigError
from vigil.logs import configure_logging
from vigil.settings import load_settings
from watcher.service import WatcherService, ensure_migrated

log = logging.getLogger("watcher")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m watcher", description=__doc__)
    parser.add_argument("--config", help="TOML settings file (else $VIGIL_CONFIG, else ./vigil.toml)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        configure_logging(settings.log, process_name="watcher")
        engine = make_engine(settings.database)
        ensure_migrated(engine)
    except ConfigError as exc:
        print(f"watcher: {exc}", file=sys.stderr)
        return 2
    factory = session_factory(engine)
    service = WatcherService(settings, factory=factory, enqueuer=Enqueuer(make_celery(settings), factory))
    service.run_forever()
    engine.dispose()
    log.info("watcher exited cleanly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
