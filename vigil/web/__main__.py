"""`python -m vigil.web [--config PATH]`: the review page as its own process (uvicorn; torch-free)."""

from __future__ import annotations

import argparse
import logging
import sys

from vigil.config.settings import Settings, load_settings
from vigil.errors import ConfigError
from vigil.ops.logs import configure_logging
from vigil.ops.ports import listen, web_listener
from vigil.store.db import make_engine, schema_revision, session_factory
from vigil.store.migrate import head_revision

log = logging.getLogger("vigil.web")


def run_web(settings: Settings, *, port_hint: str = "") -> int:
    """Serve the pages until SIGTERM/SIGINT (`vigil web` and `vigil run` call this). Exit status.
    `port_hint` ends the busy-port message (`vigil web` adds its `--port`)."""
    import uvicorn

    from vigil.web.app import create_app

    configure_logging(settings.log, process_name="web")
    engine = make_engine(settings.database)
    try:
        current, head = schema_revision(engine), head_revision()
        if current != head:
            raise ConfigError(
                f"database is at revision {current or '(none)'}, Vigil needs {head}: run `vigil db upgrade`"
            )
        app = create_app(settings, session_factory(engine))
        # Bound here, before the "review page at" line: a busy port is one line naming web.port.
        sock = listen(web_listener(settings), hint=port_hint)
        log.info("review page at http://%s:%d", settings.web.host, settings.web.port)
        if not settings.web.allowed_hosts and settings.web.host in ("0.0.0.0", "::"):
            log.warning(
                "web.host %s: only requests naming %s are answered; list the names you use in "
                "web.allowed_hosts", settings.web.host, ", ".join(sorted(settings.web.hosts())),
            )  # fmt: skip
        proxies = settings.web.trusted_proxies
        config = uvicorn.Config(
            app, log_config=None, access_log=False, server_header=False, proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
        )  # fmt: skip
        uvicorn.Server(config).run(sockets=[sock])
    except ConfigError as exc:
        print(f"web: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vigil.web", description=__doc__)
    parser.add_argument("--config", help="TOML settings file (else $VIGIL_CONFIG, else ./vigil.toml)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"web: {exc}", file=sys.stderr)
        return 2
    return run_web(settings)


if __name__ == "__main__":
    sys.exit(main())
