"""The ``pixelquery-tiler`` command line: ingest, serve and maintain a PixelQuery warehouse.

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
    """The warehouse named on the command line; read-only commands pass ``create=False``."""
    from .storage_config import parse_props
    from .warehouse import Warehouse

    props = parse_props(getattr(args, "catalog_prop", None))
    return Warehouse(args.warehouse, catalog_uri=getattr(args, "catalog_uri", None), catalog_props=props, **kwargs)


def cmd_ingest(args: argparse.Namespace) -> int:
    """``ingest``: files, URLs or STAC Items as items (one snapshot each); a bad source commits nothing."""
    from tqdm import tqdm

    wh = _warehouse(args)
    bands = [b.strip() for b in args.bands.split(",")] if args.bands else None
    assets = [a.strip() for a in args.assets.split(",")] if args.assets else None
    existing = _existing_collections(args)
    show = sys.stderr.isatty() and not args.json
    with tqdm(total=len(args.files), unit="source", disable=not show, desc="ingest") as bar:

        def done(item) -> None:
            r = item.result
            bar.set_postfix_str(r.source[:40])
            bar.update(len(item.sources))
            if not args.json:
                print(f"{r.item_id}\tsnapshot {r.snapshot_id}\t{r.datetime.isoformat()}\t{r.chunks} chunks")

        # every header is checked and duplicates refused before the first commit (see Warehouse.ingest_sources)
        results = wh.ingest_sources(
            args.files,
            args.collection,
            scene=args.scene,
            assets=assets,
            product=args.product,
            datetime=args.datetime,
            bands=bands,
            allow_duplicate=args.allow_duplicate,
            jobs=args.jobs,
            on_result=done,
        )
    if args.collection not in existing and results:
        # a typo in --collection silently starting a new collection is easy to miss: say so (stderr: --json
        # output stays pure)
        others = f" (existing: {', '.join(existing)})" if existing else ""
        print(f"pixelquery-tiler: created new collection {args.collection!r}{others}", file=sys.stderr)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    return 0


def _existing_collections(args: argparse.Namespace) -> list[str]:
    """Collections before an ingest, without creating the warehouse (a bad source must leave nothing behind)."""
    from .catalog import CatalogError

    try:
        return _warehouse(args, create=False).collections()
    except CatalogError:  # no warehouse yet: the ingest creates it
        return []
    except Exception:  # a notice only (e.g. a new PostgreSQL catalog has no tables yet); the
        log.debug("could not list collections before ingest", exc_info=True)  # ingest reports real problems
        return []


def cmd_collections(args: argparse.Namespace) -> int:
    """``collections``: list what a warehouse holds, never creating one."""
    from .catalog_listing import collection_summaries
    from .storage_config import parse_props

    props = parse_props(getattr(args, "catalog_prop", None))
    summaries = collection_summaries(args.warehouse, getattr(args, "catalog_uri", None), props)
    rows = [s.to_json() for s in summaries]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['id']}\t{r['snapshots']} snapshots\tcurrent {r['current_snapshot_id']}")
    return 0


def cmd_snapshots(args: argparse.Namespace) -> int:
    """``snapshots``: a collection's history (one snapshot per item), for time travel and audits."""
    from .warehouse import CollectionNotFound

    wh = _warehouse(args, create=False)
    try:
        snaps = wh.collection(args.collection).snapshots()
    except CollectionNotFound as exc:
        raise CliError(f"{exc}; {_known_collections(wh)}") from None
    if args.json:
        print(json.dumps([s.to_json() for s in snaps], indent=2))
    else:
        if sys.stdout.isatty():  # a header for people; pipes and scripts keep plain rows
            print("snapshot_id\tcommitted\titem_id\tacquired")
        for s in snaps:
            acquired = s.datetime.isoformat() if s.datetime else ""
            print(f"{s.snapshot_id}\t{s.timestamp.isoformat()}\t{s.item_id}\t{acquired}")
    return 0


def _known_collections(wh) -> str:
    """The end of a "collection not found" line: what the user could have meant."""
    names = wh.collections()
    return f"collections: {', '.join(names)}" if names else "the warehouse has no collections yet"


def ensure_port_free(host: str, port: int) -> None:
    """Fail with one line before printing URLs or starting uvicorn when ``host:port`` is taken."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CliError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port") from None


def cmd_gc(args: argparse.Namespace) -> int:
    """``gc``: delete (or with ``--dry-run`` list) files no snapshot references, e.g. from crashed ingests."""
    wh = _warehouse(args, create=False)
    report = wh.gc(parse_duration(args.older_than), dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for f in report.orphans:
        print(f"{verb}\t{f.path}\t{f.size}")
    print(f"{verb} {len(report.orphans)} unreferenced file(s), {report.bytes} bytes", file=sys.stderr)
    return 0


def _collection(args: argparse.Namespace):
    """The named collection of an existing warehouse, or a one-line error (creating nothing)."""
    from .fileio import normalize_uri
    from .warehouse import CollectionNotFound

    uri = normalize_uri(args.warehouse)
    if "://" not in uri and not os.path.isdir(uri):
        raise CliError(f"warehouse {args.warehouse!r} does not exist")
    try:
        return _warehouse(args).collection(args.collection)
    except CollectionNotFound as exc:
        raise CliError(str(exc)) from None


def cmd_delete(args: argparse.Namespace) -> int:
    """``delete``: remove one item in a new snapshot (older snapshots still show it)."""
    info = _collection(args).delete(args.item)  # ItemNotInCollection is a CatalogError: one line
    if args.json:
        print(json.dumps({"item_id": args.item, "snapshot_id": info.snapshot_id}, indent=2))
    else:
        print(f"deleted {args.item}\tsnapshot {info.snapshot_id}")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    """``compact``: rewrite small catalog data files into fewer ones; items, tiles and history unchanged."""
    report = _collection(args).compact()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(f"{report.files_before} -> {report.files_after} data files\tsnapshot {report.snapshot_id}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: the tile server and STAC API, after checking the warehouse and options (one-line errors)."""
    from . import supervisor
    from .fileio import normalize_uri

    uri = normalize_uri(args.warehouse)
    settings = _serve_settings(args, uri)  # validates every option before anything is created
    ensure_port_free(args.host, args.port)
    _check_serve_warehouse(args, uri, settings.catalog_uri)
    # workers re-create the app from the environment (uvicorn factory): the one Settings travels through it
    os.environ.update(settings.to_env())
    supervisor.run(
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        healthcheck_timeout=args.worker_healthcheck_timeout,
    )
    return 0


def _serve_settings(args: argparse.Namespace, uri: str):
    """The server's one ``Settings``: the ``PIXELQUERY_*`` environment, overridden or extended by the options.

    Keys and import roots add to the environment's, switches turn features on, the other options replace it.
    """
    from .settings import Settings
    from .storage_config import format_props, parse_props

    # the environment's keys and roots; its read_auth is judged below, together with the keys the options add
    env = Settings(read_auth=False)
    options: dict[str, object] = {
        "warehouse": uri,
        "refresh_interval": args.refresh_interval,
        "api_keys": [*env.api_keys, *(args.api_key or [])],
        "import_roots": [*env.import_roots, *(args.import_root or [])],
        "max_upload_mb": args.max_upload_mb,
        "job_workers": args.job_workers,
        "job_lease": args.job_lease,
        "job_attempts": args.job_attempts,
    }
    if args.read_auth:
        options["read_auth"] = True
    if args.access_log_json:
        options["access_log_json"] = True
    if args.rate_limit:
        options["rate_limit"] = args.rate_limit
    if args.catalog_uri:
        options["catalog_uri"] = args.catalog_uri
    if args.catalog_prop:
        options["catalog_props"] = format_props(parse_props(args.catalog_prop))
    if args.cors_origins is not None:
        options["cors_origins"] = args.cors_origins
    for root in [*env.import_roots, *(args.import_root or [])]:
        if not os.path.isdir(root):
            raise CliError(f"import root {root!r} is not a directory")
    return Settings(**options)  # a bad value is a SettingsError: one line, exit 2


def cmd_worker(args: argparse.Namespace) -> int:
    """Run ingest jobs from the warehouse's job table until interrupted (any number of these may run)."""
    import threading

    from .jobs import JobStore, WorkerOptions, WorkerPool

    if args.concurrency < 1 or args.job_lease <= 0:
        raise CliError("--concurrency must be >= 1 and --job-lease positive")
    wh = _warehouse(args)
    pool = WorkerPool(wh, JobStore.for_warehouse(wh), args.concurrency, WorkerOptions(lease=args.job_lease))
    pool.start()
    print(f"pixelquery-tiler worker: {args.concurrency} worker(s) on {wh.uri}", file=sys.stderr)
    try:
        threading.Event().wait()
    finally:
        pool.stop()
    return 0


def _check_serve_warehouse(args: argparse.Namespace, uri: str, catalog_uri: str | None) -> None:
    """``serve`` never creates a warehouse unless ``--create``; a remote catalog is not probed here (a replica
    started while its catalog is down must come up and answer 503 until the catalog is back)."""
    if args.create:
        _ = _warehouse(args, create=True).catalog  # creates the local catalog.db / catalog tables now
        return
    if "://" in uri or catalog_uri:
        return
    if not os.path.isfile(os.path.join(uri, "catalog.db")):
        raise CliError(f"no warehouse at {args.warehouse!r} (no catalog.db): ingest first, or pass --create")


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: build the bundled demo warehouse once and serve it."""
    from .demo import run_demo

    ensure_port_free(args.host, args.port)
    return run_demo(port=args.port, host=args.host, warehouse=args.warehouse)


def cmd_init(args: argparse.Namespace) -> int:
    """``init``: write a commented pipeline template to start from."""
    from .pipeline import write_template

    print(write_template(args.dir))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: ingest what a pipeline file lists, skipping sources already ingested."""
    from tqdm import tqdm

    from .pipeline import run_pipeline

    bar = tqdm(unit="item", disable=not (sys.stderr.isatty() and not args.json), desc="run")
    try:
        report = run_pipeline(args.pipeline, dry_run=args.dry_run, on_plans=bar.reset, on_item=lambda _: bar.update(1))
    finally:
        bar.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        verb = "would ingest" if args.dry_run else "ingested"
        for item in report.ingested:
            print(f"{verb}\t{item}")
        for source in report.skipped:
            print(f"skipped\t{source}")
    for line in report.errors:
        print(f"pixelquery-tiler: error: {line}", file=sys.stderr)
    return 1 if report.failed else 0


#: what WAREHOUSE means, on every command that takes one
WAREHOUSE_HELP = "warehouse: a folder, or s3://bucket/prefix with --catalog-uri; the first ingest creates it"
EPILOG = """examples:
  pixelquery-tiler demo                                    bundled data, viewer at http://127.0.0.1:8000/
  pixelquery-tiler ingest ./wh LC08_*_SR_B*.TIF --collection landsat
  pixelquery-tiler serve ./wh --port 8000
  pixelquery-tiler snapshots ./wh --collection landsat

'pixelquery-tiler COMMAND --help' describes each command; README.md has a tour."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one subcommand per ``cmd_*`` function (``--help`` documents each)."""
    parser = argparse.ArgumentParser(
        prog="pixelquery-tiler",
        description=__doc__.splitlines()[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress details and print the traceback of unexpected errors"
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"pixelquery-tiler {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.set_defaults(func=func)
        return p

    def catalog_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--catalog-uri",
            help="SQLAlchemy URI (PostgreSQL), SQLite file path or Iceberg REST URL; default SQLite in the warehouse",
        )
        p.add_argument(
            "--catalog-prop",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="pyiceberg catalog/S3 property, repeatable (credential, token, warehouse, s3.endpoint...); "
            "also $PIXELQUERY_CATALOG_PROPS as k=v,k=v",
        )

    p = add("ingest", cmd_ingest, "ingest rasters, scenes or STAC Items, one snapshot (STAC item) per item")
    p.add_argument("warehouse", metavar="WAREHOUSE", help=WAREHOUSE_HELP)
    p.add_argument("files", nargs="+", metavar="SOURCE", help="path, http(s):// URL, s3:// URI or STAC Item (.json)")
    p.add_argument("--scene", action="store_true", help="all SOURCEs form one item (one band group per pixel grid)")
    p.add_argument("--assets", help="comma-separated asset keys to take from STAC Item sources")
    p.add_argument("--allow-duplicate", action="store_true", help="ingest sources that are already items")
    p.add_argument("--collection", required=True)
    p.add_argument("--product", help="product profile id (default: from file name or band count)")
    p.add_argument("--datetime", help="acquisition time, ISO 8601 (default: TIFF tags or file name)")
    p.add_argument("--bands", help="comma-separated common names for the file's bands, e.g. red,green,blue,nir")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per item")
    p.add_argument(
        "--jobs", type=int, default=1, help="ingest files in N worker processes (pays for many or large files)"
    )
    catalog_opt(p)

    p = add("init", cmd_init, "write a commented example pipeline.yaml")
    p.add_argument("dir", nargs="?", default=".", metavar="DIR")

    p = add("run", cmd_run, "run a pipeline.yaml (incremental: already-ingested sources are skipped)")
    p.add_argument("pipeline", metavar="PIPELINE.yaml")
    p.add_argument("--dry-run", action="store_true", help="list what would be ingested; change nothing")
    p.add_argument("--json", action="store_true", help='print {"ingested", "skipped", "failed"}')

    p = add("serve", cmd_serve, "serve tiles and the STAC API")
    p.add_argument("warehouse", metavar="WAREHOUSE", help=WAREHOUSE_HELP)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    p.add_argument(
        "--workers", type=int, default=1, help="server processes (uvicorn workers; on Linux each has its own socket)"
    )
    p.add_argument("--log-level", default="info", help="uvicorn log level (debug, info, warning, error)")
    p.add_argument(
        "--worker-healthcheck-timeout", type=int, default=60, help="seconds before a silent worker is restarted"
    )
    p.add_argument(
        "--refresh-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often the catalog head is re-read, i.e. how soon other writers' items appear",
    )
    p.add_argument(
        "--create", action="store_true", help="start on a new, empty warehouse (filled through the jobs API)"
    )
    p.add_argument(
        "--cors-origins", help="comma-separated origins allowed by CORS (default '*': any, never with credentials)"
    )
    catalog_opt(p)
    jobs = p.add_argument_group("jobs, writes and operations")
    jobs.add_argument("--api-key", action="append", metavar="KEY", help="enable writes with this key (repeatable)")
    jobs.add_argument("--read-auth", action="store_true", help="reads need a key too (Bearer or ?token=)")
    jobs.add_argument("--import-root", action="append", metavar="DIR", help="local folder job sources may come from")
    jobs.add_argument("--max-upload-mb", type=int, default=2048, help="upload size cap")
    jobs.add_argument("--rate-limit", metavar="N/s", help="requests per second per key or client address")
    jobs.add_argument("--job-workers", type=int, default=1, help="ingest job threads per server process (0 = none)")
    jobs.add_argument("--job-lease", type=float, default=60.0, help="seconds before a dead worker's job is retried")
    jobs.add_argument("--job-attempts", type=int, default=3, help="attempts per job for transient failures")
    jobs.add_argument("--access-log-json", action="store_true", help="one JSON line per request (no query strings)")

    p = add("worker", cmd_worker, "run queued ingest jobs (next to or instead of the servers' own workers)")
    p.add_argument("warehouse", metavar="WAREHOUSE", help=WAREHOUSE_HELP)
    p.add_argument("--concurrency", type=int, default=1, help="jobs run at once by this process")
    p.add_argument("--job-lease", type=float, default=60.0, help="seconds before a dead worker's job is retried")
    catalog_opt(p)

    p = add("demo", cmd_demo, "build a demo warehouse from bundled real data and serve it")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--warehouse", help="where to build the demo warehouse (default: a per-user cache folder)")

    p = add("collections", cmd_collections, "list collections")
    p.add_argument("warehouse", metavar="WAREHOUSE", help=WAREHOUSE_HELP)
    p.add_argument("--json", action="store_true")
    catalog_opt(p)

    p = add("snapshots", cmd_snapshots, "list a collection's snapshots")
    p.add_argument("warehouse", metavar="WAREHOUSE", help=WAREHOUSE_HELP)
    p.add_argument("--collection", required=True)
    p.add_argument("--json", action="store_true")
    catalog_opt(p)

    p = add("delete", cmd_delete, "remove an item from the head in a new snapshot (time travel still shows it)")
    p.add_argument("warehouse", metavar="WAREHOUSE", help=WAREHOUSE_HELP)
    p.add_argument("--collection", required=True)
    p.add_argument("--item", required=True, help="item id")
    p.add_argument("--json", action="store_true")
    catalog_opt(p)

    p = add("compact", cmd_compact, "rewrite a collection's small catalog data files into few sorted ones")
    p.add_argument("warehouse", metavar="WAREHOUSE", help=WAREHOUSE_HELP)
    p.add_argument("--collection", required=True)
    p.add_argument("--json", action="store_true")
    catalog_opt(p)

    p = add("gc", cmd_gc, "delete chunk and Iceberg files no snapshot references")
    p.add_argument("warehouse", metavar="WAREHOUSE", help=WAREHOUSE_HELP)
    p.add_argument("--older-than", default="1h", help="grace period for in-flight ingests")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    catalog_opt(p)
    return parser


def _loaded_user_errors() -> tuple[type[Exception], ...]:
    """The package's user-facing error classes among the modules a command imported.

    Looked up in ``sys.modules`` instead of imported, so that a light command (``--help``, ``collections``)
    does not pay for rasterio or pyiceberg only to name exceptions it cannot raise.
    """
    found = []
    for module, name in (
        ("pixelquery_tiler.ingest", "IngestError"),
        ("pixelquery_tiler.catalog", "CatalogError"),
        ("pixelquery_tiler.storage_config", "StorageConfigError"),
        ("pixelquery_tiler.settings", "SettingsError"),
    ):
        if module in sys.modules:
            found.append(getattr(sys.modules[module], name))
    return tuple(found)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``pixelquery-tiler`` entry point: bad input is one line on stderr and exit 2, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        # GDAL chatter about a broken file would bury the one-line error the user needs
        import warnings

        warnings.simplefilter("ignore")
        logging.getLogger("rasterio").setLevel(logging.CRITICAL)
        # pyiceberg warns on every optimistic-concurrency retry; they are expected under concurrent ingest
        logging.getLogger("pyiceberg").setLevel(logging.ERROR)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("pixelquery-tiler: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # the user errors of the modules the command imported, looked up now that it has run
        if isinstance(exc, (CliError, *_loaded_user_errors())):
            print(f"pixelquery-tiler: error: {exc}", file=sys.stderr)
            return 2
        # unexpected: still one line, the traceback with -v
        log.info("unexpected error", exc_info=True)
        print(
            f"pixelquery-tiler: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
