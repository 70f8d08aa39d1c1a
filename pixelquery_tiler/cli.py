"""The ``pixelquery-tiler`` command line (see CONTRACT.md for names and behaviour).

Bad input exits non-zero with one line on stderr and no traceback; nothing is committed on failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Sequence

log = logging.getLogger("pixelquery_tiler")


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``30m``, ``1h``, ``2d``, ``1w`` or plain seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise CliError(f"invalid duration {text!r} (use e.g. 30m, 1h, 2d)")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
    return dt.timedelta(seconds=float(m.group(1)) * unit)


def _warehouse(args: argparse.Namespace, **kwargs):
    from .warehouse import Warehouse

    return Warehouse(args.warehouse, catalog_uri=getattr(args, "catalog_uri", None), **kwargs)


def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    wh = _warehouse(args)
    bands = [b.strip() for b in args.bands.split(",")] if args.bands else None
    from .ingest import IngestResult, check_name, inspect_source

    # header checks of every file first: bad input anywhere in the list commits nothing
    check_name("collection", args.collection)
    for path in args.files:
        inspect_source(path, args.product, args.datetime, bands)
    show = sys.stderr.isatty() and not args.json
    with tqdm(total=len(args.files), unit="file", disable=not show, desc="ingest") as bar:

        def done(result: IngestResult) -> None:
            bar.set_postfix_str(result.source[:40])
            bar.update(1)
            if not args.json:
                print(f"{result.item_id}\tsnapshot {result.snapshot_id}\t{result.datetime.isoformat()}\t{result.chunks} chunks")

        results = wh.ingest_many(
            args.files, args.collection, jobs=args.jobs, on_result=done,
            product=args.product, datetime=args.datetime, bands=bands,
        )
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    return 0


def cmd_collections(args: argparse.Namespace) -> int:
    wh = _warehouse(args)
    rows = []
    for name in wh.collections():
        snaps = wh.collection(name).snapshots()
        rows.append({"id": name, "snapshots": len(snaps), "current_snapshot_id": snaps[-1].snapshot_id if snaps else None})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['id']}\t{r['snapshots']} snapshots\tcurrent {r['current_snapshot_id']}")
    return 0


def cmd_snapshots(args: argparse.Namespace) -> int:
    from .warehouse import CollectionNotFound

    wh = _warehouse(args)
    try:
        snaps = wh.collection(args.collection).snapshots()
    except CollectionNotFound as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps([s.to_json() for s in snaps], indent=2))
    else:
        for s in snaps:
            print(f"{s.snapshot_id}\t{s.timestamp.isoformat()}\t{s.item_id}\t{s.datetime.isoformat() if s.datetime else ''}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    wh = _warehouse(args)
    report = wh.gc(parse_duration(args.older_than), dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for f in report.orphans:
        print(f"{verb}\t{f.path}\t{f.size}")
    print(f"{verb} {len(report.orphans)} unreferenced file(s), {report.bytes} bytes", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .fileio import normalize_uri

    uri = normalize_uri(args.warehouse)
    if "://" not in uri and not os.path.isdir(uri):
        raise CliError(f"warehouse {args.warehouse!r} does not exist")
    # workers re-create the app from the environment (uvicorn factory), so settings travel through it
    os.environ["PIXELQUERY_WAREHOUSE"] = uri
    if args.catalog_uri:
        os.environ["PIXELQUERY_CATALOG_URI"] = args.catalog_uri
    if args.cors_origins is not None:
        os.environ["PIXELQUERY_CORS_ORIGINS"] = args.cors_origins
    uvicorn.run(
        "pixelquery_tiler.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        # uvicorn restarts a worker that misses a 5 s health ping; app start-up (imports, first index) and
        # CPU-bound tiles on a small machine can exceed that, so allow more before declaring it dead
        timeout_worker_healthcheck=args.worker_healthcheck_timeout,
        http="pixelquery_tiler.server:HeaderTimeoutProtocol",  # closes connections that send headers too slowly
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(port=args.port, host=args.host, warehouse=args.warehouse)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pixelquery-tiler", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.set_defaults(func=func)
        return p

    def catalog_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--catalog-uri", help="SQLAlchemy URI (PostgreSQL) or Iceberg REST URL; default SQLite in the warehouse")

    p = add("ingest", cmd_ingest, "ingest GeoTIFF/COG files, one snapshot (STAC item) each")
    p.add_argument("warehouse")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--collection", required=True)
    p.add_argument("--product", help="product profile id (default: from file name or band count)")
    p.add_argument("--datetime", help="acquisition time, ISO 8601 (default: TIFF tags or file name)")
    p.add_argument("--bands", help="comma-separated common names for the file's bands, e.g. red,green,blue,nir")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    p.add_argument("--jobs", type=int, default=1, help="ingest files in N worker processes (pays for many or large files)")
    catalog_opt(p)

    p = add("serve", cmd_serve, "serve tiles and the STAC API")
    p.add_argument("warehouse")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-level", default="info")
    p.add_argument("--worker-healthcheck-timeout", type=int, default=60, help="seconds before a silent worker is restarted")
    p.add_argument("--cors-origins", help="comma-separated origins allowed by CORS (default '*': any, never with credentials)")
    catalog_opt(p)

    p = add("demo", cmd_demo, "build a demo warehouse from bundled real data and serve it")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--warehouse", help="where to build the demo warehouse (default: a per-user cache folder)")

    p = add("collections", cmd_collections, "list collections")
    p.add_argument("warehouse")
    p.add_argument("--json", action="store_true")
    catalog_opt(p)

    p = add("snapshots", cmd_snapshots, "list a collection's snapshots")
    p.add_argument("warehouse")
    p.add_argument("--collection", required=True)
    p.add_argument("--json", action="store_true")
    catalog_opt(p)

    p = add("gc", cmd_gc, "delete chunk files no snapshot references")
    p.add_argument("warehouse")
    p.add_argument("--older-than", default="1h", help="grace period for in-flight ingests (default 1h)")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    catalog_opt(p)
    return parser


def _loaded_user_errors() -> tuple[type[Exception], ...]:
    """The package's user-facing error classes among the modules a command imported.

    Looked up in ``sys.modules`` instead of imported, so that a light command (``--help``, ``collections``)
    does not pay for rasterio or pyiceberg only to name exceptions it cannot raise.
    """
    found = []
    for module, name in (("pixelquery_tiler.ingest", "IngestError"), ("pixelquery_tiler.catalog", "CatalogError")):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # GDAL chatter about a broken file would bury the one-line error the user needs
        import warnings

        warnings.simplefilter("ignore")
        logging.getLogger("rasterio").setLevel(logging.CRITICAL)
        # pyiceberg warns on every optimistic-concurrency retry; they are expected under concurrent ingest
        logging.getLogger("pyiceberg").setLevel(logging.ERROR)
    try:
        return args.func(args)
    except (CliError, *_loaded_user_errors()) as exc:
        print(f"pixelquery-tiler: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pixelquery-tiler: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # unexpected: still one line, details with -v
        log.debug("unexpected error", exc_info=True)
        print(f"pixelquery-tiler: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
