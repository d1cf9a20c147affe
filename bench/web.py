"""Review page time at 100,000 detections: the pages a person opens, served by a real `vigil.web` process.

Each page is fetched whole over HTTP (query + render + transfer) and the median of `--repeat` fetches is
reported. Baselines measured in the same run: the same pages over a database of 1,000 detections (paging
should not slow down with the table), and the deep page's query written with OFFSET instead of the keyset
the timeline uses. On PostgreSQL the tables are ANALYZEd after the bulk load (autovacuum would do it).
Prints a table, then one JSON line.

    PYTHONPATH=. python bench/web.py [--rows 100000] [--pg postgresql+psycopg://postgres@127.0.0.1/postgres]

``--quick`` is a smoke run (2,000 against 200 detections, 2 fetches a page): it proves the script runs, it
measures nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.web import bulk_detections, seed_review, start_web, stop
from vigil.store.migrate import upgrade


def median_ms(fetch: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fetch()  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def pages(url: str, rows: int, root: Path, repeat: int) -> dict[str, float]:
    seeded = seed_review(url, root)
    bulk_detections(url, rows)
    engine = create_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))  # fresh statistics, as autovacuum keeps them after a bulk load
    with engine.connect() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM detections WHERE matched ORDER BY id DESC"))]
        mid = ids[len(ids) // 2]
        keyset = "SELECT d.id FROM detections d WHERE d.matched AND d.id < :mid ORDER BY d.id DESC LIMIT 51"
        offset = "SELECT d.id FROM detections d WHERE d.matched ORDER BY d.id DESC LIMIT 51 OFFSET :n"
        sql = {
            "sql_keyset_deep": median_ms(lambda: conn.execute(text(keyset), {"mid": mid}).all(), repeat),
            "sql_offset_deep": median_ms(
                lambda: conn.execute(text(offset), {"n": len(ids) // 2}).all(), repeat
            ),
        }
    engine.dispose()
    process, base, _ = start_web(root, url)
    client = httpx.Client(base_url=base, timeout=60)
    paths = {
        "timeline": "/",
        "timeline_deep": f"/?before={mid}",
        "timeline_target": "/?target=van",
        "timeline_unlabelled": "/?feedback=none&min_score=0.9",
        "timeline_alerts_only": "/?alerts=1",
        "media": f"/media/{seeded.media_id}",
        "targets": "/targets",
    }
    try:
        for path in paths.values():
            assert client.get(path).status_code == 200, path
        result = {name: median_ms(lambda p=path: client.get(p), repeat) for name, path in paths.items()}
    finally:
        client.close()
        stop(process)
    return result | sql


def databases(pg: str | None) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = [("sqlite", None)]
    if pg:
        out.append(("postgresql", pg))
    return out


def fresh_url(kind: str, admin: object, root: Path) -> tuple[str, object]:
    if kind == "sqlite":
        return f"sqlite:///{root / 'vigil.db'}", None
    name = f"vigil_bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(str(admin), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return str(admin).rsplit("/", 1)[0] + f"/{name}", (admin, name)


def drop(cleanup: object) -> None:
    if cleanup is None:
        return
    admin, name = cleanup  # type: ignore[misc]
    engine = create_engine(str(admin), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--baseline-rows", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--pg", help="PostgreSQL admin URL: also measure there")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2,000 rows, 2 fetches (no figures)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.baseline_rows, args.repeat = 2_000, 200, 2
    report: dict[str, object] = {
        "bench": "web",
        "quick": args.quick,
        "rows": args.rows,
        "baseline_rows": args.baseline_rows,
    }
    for kind, admin in databases(args.pg):
        measured = {}
        for rows in (args.baseline_rows, args.rows):
            with tempfile.TemporaryDirectory() as tmp:
                url, cleanup = fresh_url(kind, admin, Path(tmp))
                try:
                    upgrade(url)
                    measured[rows] = pages(url, rows, Path(tmp), args.repeat)
                finally:
                    drop(cleanup)
        small, big = measured[args.baseline_rows], measured[args.rows]
        print(
            f"{kind}: median ms per page (whole HTTP response), "
            f"{args.baseline_rows:,} vs {args.rows:,} detections"
        )
        for name in big:
            print(f"  {name:<22}{small[name]:9.1f}{big[name]:9.1f}   x{big[name] / small[name]:.2f}")
        offset_ratio = big["sql_offset_deep"] / big["sql_keyset_deep"]
        print(f"  deep page query, OFFSET / keyset at {args.rows:,}: x{offset_ratio:.1f}")
        report[kind] = {
            "ms": {k: round(v, 2) for k, v in big.items()},
            "baseline_ms": {k: round(v, 2) for k, v in small.items()},
            "ratio_vs_baseline_rows": {k: round(big[k] / small[k], 2) for k in big},
            "offset_over_keyset": round(big["sql_offset_deep"] / big["sql_keyset_deep"], 1),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
