"""A test's PostgreSQL database: migrated from empty (the old fixture) against a copy of a template migrated
once (`CREATE DATABASE ... TEMPLATE`, tests/support/services.py). Interleaved rounds on the same server, so
both see the same load; prints medians, the ratio, then one JSON line.

    PYTHONPATH=. python bench/pg_template.py [--rounds 10] [--quick]

``--quick`` is a smoke run (one round): it proves the script runs, it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from tests.support.services import PG_ADMIN_URL, pg_database, pg_template
from vigil.store.migrate import upgrade


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="smoke run: one round (no figures)")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 1
    migrate_s: list[float] = []
    copy_s: list[float] = []
    began = time.perf_counter()
    with pg_template(PG_ADMIN_URL) as template:
        template_s = time.perf_counter() - began
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            with pg_database(PG_ADMIN_URL) as url:
                upgrade(url)
                migrate_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with pg_database(PG_ADMIN_URL, template=template):
                copy_s.append(time.perf_counter() - t0)
    migrate, copy = statistics.median(migrate_s), statistics.median(copy_s)
    print(f"template migrated once: {template_s * 1000:.0f} ms")
    print(f"create + migrate: median {migrate * 1000:.0f} ms over {args.rounds}")
    print(f"copy of template: median {copy * 1000:.0f} ms over {args.rounds}")
    print(f"ratio: {migrate / copy:.1f}x")
    figures = {
        "bench": "pg_template",
        "quick": args.quick,
        "rounds": args.rounds,
        "migrate_ms": round(migrate * 1000, 1),
        "copy_ms": round(copy * 1000, 1),
        "ratio": round(migrate / copy, 2),
        "template_ms": round(template_s * 1000, 1),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
