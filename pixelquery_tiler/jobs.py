"""Ingest jobs: a durable queue in the catalog's own database, and the workers that run it.

Why a table of our own and not a task-queue library: the queue must live in the database the catalog already
uses (SQLite by default, PostgreSQL when scaled out) so that a server restart keeps the jobs and any replica
can run them without a new service to operate. The maintained Python queues each cover one of the two:
Procrastinate and PgQueuer need PostgreSQL (LISTEN/NOTIFY, PL/pgSQL), Huey's SQL storage is SQLite only,
Celery/RQ/Dramatiq/SAQ need Redis or a broker. So jobs are rows of one table, claimed atomically:

- a claim is a compare-and-set ``UPDATE ... WHERE id = :id AND <still claimable>`` whose row count says who
  won; on PostgreSQL the candidate is first selected ``FOR UPDATE SKIP LOCKED`` so concurrent workers pick
  different rows instead of racing for one; SQLite has a single writer, so the conditional update alone is
  atomic there;
- a claimed job carries a lease (``lease_until``) that its worker renews while it runs; a job whose worker
  died is claimable again once the lease has expired, and every later write of the old worker is fenced off
  by ``worker`` + ``attempts``;
- transient failures (I/O, network, catalog conflicts) go back to the queue with exponential backoff until
  ``max_attempts``; permanent ones (``IngestError``: not a raster, no datetime...) fail at once with the
  one-line reason.

A job's sources are checked from their headers before the first commit, so bad input commits nothing. Each
committed item is recorded on the job right away; a retry skips sources already committed (also the ones
committed just before a crash, found by their source name in snapshots newer than the job's first start), so
a retried job never ingests a file twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import sqlalchemy as sa

from . import catalog as cat
from .ingest import IngestError, inspect_source
from .warehouse import CollectionNotFound, Warehouse

log = logging.getLogger(__name__)

STATUSES = ("queued", "running", "succeeded", "failed")
UPLOAD_SCHEME = "upload://"
UPLOADS_DIR = "uploads"
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_REMOTE = re.compile(r"^(https?|s3|gs|az|abfs|abfss)://", re.IGNORECASE)

_metadata = sa.MetaData()
JOBS = sa.Table(
    "pixelquery_jobs",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("progress", sa.Float, nullable=False, default=0.0),
    sa.Column("items", sa.Text, nullable=False, default="[]"),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("created", sa.Float, nullable=False, index=True),
    sa.Column("updated", sa.Float, nullable=False),
    sa.Column("run_after", sa.Float, nullable=False),
    sa.Column("lease_until", sa.Float),
    sa.Column("worker", sa.String(200)),
    sa.Column("started", sa.Float),
)


class SourceError(ValueError):
    """A job source the server must not or cannot read (HTTP 400 at submit time)."""


class PermanentJobError(Exception):
    """The job cannot succeed on retry (bad input); it fails at once with this one-line reason."""


class LeaseLost(RuntimeError):
    """Another worker owns the job now (this worker's lease expired)."""


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Job:
    """One row of the job table: a queued, running, succeeded or failed ingest request and its progress."""

    id: str
    status: str
    request: dict[str, Any]
    progress: float = 0.0
    items: list[str] = field(default_factory=list)
    error: str | None = None
    attempts: int = 0
    max_attempts: int = 3
    created: float = 0.0
    updated: float = 0.0
    run_after: float = 0.0
    lease_until: float | None = None
    worker: str | None = None
    started: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        """A job from a table row (JSON columns decoded: request and items are stored as text)."""
        m = row._mapping
        return cls(
            id=m["id"],
            status=m["status"],
            request=json.loads(m["request"]),
            progress=m["progress"],
            items=json.loads(m["items"]),
            error=m["error"],
            attempts=m["attempts"],
            max_attempts=m["max_attempts"],
            created=m["created"],
            updated=m["updated"],
            run_after=m["run_after"],
            lease_until=m["lease_until"],
            worker=m["worker"],
            started=m["started"],
        )

    def to_json(self) -> dict[str, Any]:
        """The contract's job document (plus ``collection``); sources are not echoed (they may hold secrets)."""
        return {
            "id": self.id,
            "status": self.status,
            "progress": round(self.progress, 4),
            "items": self.items,
            "error": self.error,
            "attempts": self.attempts,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
            "collection": self.request.get("collection"),
        }


def database_uri(warehouse: Warehouse) -> str:
    """The SQLAlchemy URI of the warehouse's catalog database (the job table lives next to the catalog's).

    Resolved like ``catalog.open_catalog``: the warehouse's catalog URI, else ``$PIXELQUERY_CATALOG_URI``,
    else ``catalog.db`` of a local warehouse. An Iceberg REST catalog has no SQL database to share: its jobs
    go to ``jobs.db`` in a local warehouse.
    """
    uri = warehouse._catalog_uri or cat.configured_catalog_uri()
    local = warehouse.fs.local_path()
    if uri and "://" not in uri:  # a plain path to the SQLite catalog file
        return f"sqlite:///{os.path.abspath(os.path.expanduser(uri))}?timeout=30"
    if uri and not uri.startswith(("http://", "https://")):
        return uri
    if local is None:
        raise cat.CatalogError("jobs need a SQL database: pass a SQLAlchemy --catalog-uri for a remote warehouse")
    os.makedirs(local, exist_ok=True)
    name = "jobs.db" if uri else "catalog.db"
    return f"sqlite:///{os.path.join(local, name)}?timeout=30"


#: item ids as ``JobStore`` methods take them (``JobStore.list`` shadows the builtin in the class body)
ItemIds = list[str]


class JobStore:
    """The durable job table; every method is one short transaction, safe from any thread or process."""

    def __init__(self, uri: str):
        self.uri = uri
        self.engine = sa.create_engine(uri, pool_pre_ping=True)
        self.is_postgres = self.engine.dialect.name == "postgresql"
        self._table_ready = False
        self._table_lock = threading.Lock()
        try:
            self._ensure_table()
        except sa.exc.OperationalError as exc:
            # a replica may start while the catalog database is down: it serves reads (503 until the database is
            # back) and its workers wait the outage out; the table is created on the first use that reaches it
            log.warning("job table not created yet: database unreachable (%s)", exc.orig)

    def _ensure_table(self) -> None:
        """Create the job table once per store (idempotent: every process and replica runs this)."""
        if self._table_ready:
            return
        with self._table_lock:
            if self._table_ready:
                return
            with self.engine.connect():  # an unreachable database fails here, at once, without the retries below
                pass
            for attempt in range(40):  # several processes may create the table at once
                try:
                    _metadata.create_all(self.engine, checkfirst=True)
                    break
                except sa.exc.SQLAlchemyError:
                    if attempt == 39:
                        raise
                    time.sleep(0.05 + random.random() * 0.1)
            self._table_ready = True

    def _begin(self) -> Any:
        """A transaction on the job table (created first if an outage at start-up had deferred it)."""
        self._ensure_table()
        return self.engine.begin()

    def _connect(self) -> Any:
        """A connection for reads of the job table (created first, as ``_begin``)."""
        self._ensure_table()
        return self.engine.connect()

    @classmethod
    def for_warehouse(cls, warehouse: Warehouse) -> JobStore:
        """The job table beside the warehouse's catalog (see ``database_uri``): one database to run."""
        return cls(database_uri(warehouse))

    # -- submit and read -------------------------------------------------------------------------------
    def submit(self, request: dict[str, Any], max_attempts: int = 3) -> Job:
        """Queue a request (runnable at once) and return its job; workers in any process may claim it."""
        now = time.time()
        job = Job(
            id=uuid.uuid4().hex,
            status="queued",
            request=request,
            max_attempts=max_attempts,
            created=now,
            updated=now,
            run_after=now,
        )
        with self._begin() as conn:
            conn.execute(
                JOBS.insert().values(
                    id=job.id,
                    status=job.status,
                    request=json.dumps(request),
                    progress=0.0,
                    items="[]",
                    attempts=0,
                    max_attempts=max_attempts,
                    created=now,
                    updated=now,
                    run_after=now,
                )
            )
        log.info("job %s queued for collection %s", job.id, request.get("collection"))
        return job

    def get(self, job_id: str) -> Job | None:
        """One job by id, or ``None`` (ids are opaque: an unknown one is a 404, not an error)."""
        with self._connect() as conn:
            row = conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).first()
        return Job.from_row(row) if row else None

    def list(self, limit: int = 100, status: str | None = None) -> list[Job]:
        """The newest jobs first, optionally of one status (for ``GET /jobs``)."""
        query = sa.select(JOBS).order_by(JOBS.c.created.desc(), JOBS.c.id.desc()).limit(limit)
        if status:
            query = query.where(JOBS.c.status == status)
        with self._connect() as conn:
            return [Job.from_row(r) for r in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        """Jobs per status, every status present (zeros included) so the metrics gauge is complete."""
        with self._connect() as conn:
            rows = conn.execute(sa.select(JOBS.c.status, sa.func.count()).group_by(JOBS.c.status)).all()
        counts = dict.fromkeys(STATUSES, 0)
        counts.update({status: n for status, n in rows})
        return counts

    def ping(self) -> None:
        """One cheap query: readiness checks that the job database answers."""
        with self._connect() as conn:
            conn.execute(sa.select(sa.func.count()).select_from(JOBS))

    # -- claims and leases -----------------------------------------------------------------------------
    def _claimable(self, now: float):
        queued = sa.and_(JOBS.c.status == "queued", JOBS.c.run_after <= now)
        expired = sa.and_(JOBS.c.status == "running", JOBS.c.lease_until < now)
        return sa.or_(queued, expired)

    def claim(self, worker: str, lease: float) -> Job | None:
        """Take the oldest runnable job (queued, or running under an expired lease), or ``None``."""
        for _ in range(20):
            now = time.time()
            with self._begin() as conn:
                query = (
                    sa.select(JOBS.c.id, JOBS.c.attempts, JOBS.c.max_attempts, JOBS.c.status)
                    .where(self._claimable(now))
                    .order_by(JOBS.c.created)
                    .limit(1)
                )
                if self.is_postgres:
                    query = query.with_for_update(skip_locked=True)
                row = conn.execute(query).first()
                if row is None:
                    return None
                if row.status == "running" and row.attempts >= row.max_attempts:
                    # its last worker died with no attempt left: give up instead of running it again
                    conn.execute(
                        JOBS.update()
                        .where(JOBS.c.id == row.id, self._claimable(now))
                        .values(
                            status="failed",
                            error="worker lost (lease expired) after the last attempt",
                            updated=now,
                            lease_until=None,
                        )
                    )
                    continue
                won = conn.execute(
                    JOBS.update()
                    .where(JOBS.c.id == row.id, self._claimable(now))
                    .values(
                        status="running",
                        worker=worker,
                        attempts=JOBS.c.attempts + 1,
                        lease_until=now + lease,
                        updated=now,
                        started=sa.func.coalesce(JOBS.c.started, now),
                    )
                ).rowcount
                if won == 1:
                    got = conn.execute(sa.select(JOBS).where(JOBS.c.id == row.id)).first()
                    job = Job.from_row(got)
                    log.info("job %s claimed by %s (attempt %d)", job.id, worker, job.attempts)
                    return job
        return None

    def _fenced(self, job: Job, **values: Any) -> None:
        """Update ``job`` only while this worker still holds it; else ``LeaseLost``."""
        values.setdefault("updated", time.time())
        with self._begin() as conn:
            n = conn.execute(
                JOBS.update()
                .where(
                    JOBS.c.id == job.id,
                    JOBS.c.status == "running",
                    JOBS.c.worker == job.worker,
                    JOBS.c.attempts == job.attempts,
                )
                .values(**values)
            ).rowcount
        if n != 1:
            raise LeaseLost(f"job {job.id}: lease lost")

    def renew(self, job: Job, lease: float) -> None:
        """Extend this worker's lease (heartbeat); ``LeaseLost`` if another worker took the job over."""
        self._fenced(job, lease_until=time.time() + lease)

    def report(self, job: Job, progress: float, lease: float, items: ItemIds | None = None) -> None:
        """Record progress and the items committed so far, renewing the lease in the same update."""
        values: dict[str, Any] = {"progress": max(0.0, min(1.0, progress)), "lease_until": time.time() + lease}
        if items is not None:
            values["items"] = json.dumps(items)
        self._fenced(job, **values)

    def succeed(self, job: Job, items: ItemIds) -> None:
        """Mark the job succeeded with the items it committed (fenced: only the lease holder can)."""
        self._fenced(job, status="succeeded", progress=1.0, items=json.dumps(items), error=None, lease_until=None)
        log.info("job %s succeeded: %s", job.id, ", ".join(items))

    def fail(self, job: Job, reason: str) -> None:
        """Mark the job failed for good (bad input, or no attempt left); the reason is shown to clients."""
        self._fenced(job, status="failed", error=reason, lease_until=None)
        log.warning("job %s failed: %s", job.id, reason)

    def retry_later(self, job: Job, reason: str, delay: float) -> None:
        """Requeue after a transient failure, runnable again after ``delay`` (exponential backoff)."""
        self._fenced(job, status="queued", error=reason, run_after=time.time() + delay, lease_until=None, worker=None)
        log.warning("job %s attempt %d failed (%s); retry in %.1f s", job.id, job.attempts, reason, delay)


# -- sources -------------------------------------------------------------------------------------------------
def upload_relpath(warehouse: Warehouse, upload_id: str) -> str | None:
    """Warehouse-relative path of the file of upload ``upload_id``, or ``None`` if there is none."""
    if not _UPLOAD_ID.match(upload_id):
        return None
    files = [f for f in warehouse.fs.list_files(f"{UPLOADS_DIR}/{upload_id}") if not f.path.endswith(".partial")]
    return files[0].path if len(files) == 1 else None


def resolve_source(warehouse: Warehouse, source: str) -> str:
    """What ``rasterio``/ingest opens for a source string: an upload's file, else the source itself."""
    if source.startswith(UPLOAD_SCHEME):
        rel = upload_relpath(warehouse, source[len(UPLOAD_SCHEME) :])
        if rel is None:
            raise SourceError(f"no such upload {source!r}")
        return warehouse.fs.local_path(rel) or warehouse.fs.uri_of(rel)
    return source


def check_source(warehouse: Warehouse, source: Any, import_roots: list[str]) -> None:
    """Reject, at submit time, a source the server may not read (``SourceError``)."""
    if isinstance(source, dict):
        if source.get("type") != "Feature" or not isinstance(source.get("assets"), dict):
            raise SourceError('a STAC item source needs "type": "Feature" and an "assets" object')
        for href in item_hrefs(source, None):
            check_source(warehouse, href, import_roots)
        return
    if not isinstance(source, str) or not source:
        raise SourceError("each source is a path, URL, upload://ID or a STAC item")
    if source.startswith(UPLOAD_SCHEME):
        resolve_source(warehouse, source)
        return
    if _REMOTE.match(source):
        return
    path = source.removeprefix("file://")
    if "://" in path:
        raise SourceError(f"unsupported source scheme in {source!r}")
    real = os.path.realpath(path)
    for root in import_roots:
        root_real = os.path.realpath(root)
        if real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep):
            if not os.path.isfile(real):
                raise SourceError(f"{source!r}: no such file")
            return
    raise SourceError(f"local path {source!r} is outside the server's import roots (serve --import-root)")


def item_hrefs(item: dict[str, Any], asset_keys: list[str] | None) -> list[str]:
    """Raster asset hrefs of a STAC item (GeoTIFF media type or ``data`` role), optionally only ``asset_keys``."""
    hrefs = []
    for key, asset in item.get("assets", {}).items():
        if asset_keys and key not in asset_keys:
            continue
        media, roles = str(asset.get("type", "")), asset.get("roles") or []
        if (asset_keys or "tiff" in media or "data" in roles) and isinstance(asset.get("href"), str):
            hrefs.append(asset["href"])
    if not hrefs:
        raise SourceError(f"STAC item {item.get('id')!r} has no raster asset to ingest")
    return hrefs


def expand_sources(request: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(href, datetime) per file to ingest: STAC items contribute their raster assets and their datetime."""
    out: list[tuple[str, str | None]] = []
    for source in request["sources"]:
        if isinstance(source, dict):
            when = request.get("datetime") or (source.get("properties") or {}).get("datetime")
            out.extend((href, when) for href in item_hrefs(source, request.get("assets")))
        else:
            out.append((source, request.get("datetime")))
    return out


# -- running a job -------------------------------------------------------------------------------------------
def _committed_item(warehouse: Warehouse, collection: str, source_name: str, since: float | None) -> str | None:
    """The item of ``source_name`` committed at or after ``since`` (a crash between commit and bookkeeping)."""
    if since is None:
        return None
    try:
        snaps = warehouse.collection(collection).snapshots()
    except CollectionNotFound:
        return None
    for snap in reversed(snaps):
        if snap.timestamp.timestamp() + 1.0 < since:  # +1 s: snapshot clocks are ms, claim clocks may skew
            break
        if snap.properties.get("source") == source_name and snap.item_id:
            return snap.item_id
    return None


def run_ingest(warehouse: Warehouse, job: Job, progress: Callable[[float, list[str]], None]) -> list[str]:
    """Ingest the job's sources; the one place that turns a job request into catalog commits.

    Plain sources become one item each through ``Warehouse.ingest``; scenes and STAC Items go through
    ``_run_scene_ingest``. ``progress(fraction, items)`` is called while running and after each commit (the
    worker records the items, so a retry skips them).
    """
    request = job.request
    collection = request["collection"]
    if request.get("scene") or any(isinstance(s, dict) for s in request["sources"]):
        return _run_scene_ingest(warehouse, job, progress)
    files = expand_sources(request)
    bands = request.get("bands")
    # headers of every file first: a bad file anywhere fails the job before anything is committed
    resolved = []
    for href, when in files:
        try:
            path = resolve_source(warehouse, href)
        except SourceError as exc:
            raise PermanentJobError(str(exc)) from None
        inspect_source(path, request.get("product"), when, bands)
        resolved.append((path, when))
    items = list(job.items)
    total = len(resolved)
    for i, (path, when) in enumerate(resolved):
        if i < len(items):
            continue  # committed by an earlier attempt
        found = _committed_item(warehouse, collection, PurePath(path).name, job.started) if job.attempts > 1 else None
        if found is None:
            levels = 0

            def on_level(_message: str, i: int = i) -> None:
                nonlocal levels
                levels += 1
                progress((i + levels / (levels + 1)) / total, items)

            progress(i / total, items)
            found = warehouse.ingest(
                path, collection, product=request.get("product"), datetime=when, bands=bands, progress=on_level
            ).item_id
        items.append(found)
        progress((i + 1) / total, items)
    return items


def _run_scene_ingest(warehouse: Warehouse, job: Job, progress: Callable[[float, list[str]], None]) -> list[str]:
    """A scene (``scene: true``: all sources one item) or STAC Items (each one item with its own id and datetime).

    Goes through ``Warehouse.ingest_sources``, the CLI's path: every header is checked before the first commit.
    A STAC Item body is handed over as a JSON file (its hrefs must be absolute: it has no location of its own).
    An attempt after a crash past the commit finds the job's items already recorded, or is refused as a
    duplicate of them (one line naming the item) instead of ingesting them twice.
    """
    import tempfile

    request = job.request
    if job.items:
        return list(job.items)  # committed and recorded by an earlier attempt
    with tempfile.TemporaryDirectory(prefix="pixelquery-job-") as tmp:
        sources = []
        for n, source in enumerate(request["sources"]):
            if isinstance(source, dict):
                path = os.path.join(tmp, f"item-{n}.json")
                with open(path, "w") as f:
                    json.dump(source, f)
                sources.append(path)
            else:
                try:
                    sources.append(resolve_source(warehouse, source))
                except SourceError as exc:
                    raise PermanentJobError(str(exc)) from None
        progress(0.0, [])
        results = warehouse.ingest_sources(
            sources,
            request["collection"],
            assets=request.get("assets"),
            # a STAC Item is one item already; ``scene`` groups plain files
            scene=bool(request.get("scene")) and all(isinstance(s, str) for s in request["sources"]),
            product=request.get("product"),
            datetime=request.get("datetime"),
            bands=request.get("bands"),
            allow_duplicate=bool(request.get("allow_duplicate")),
        )
    items = [r.result.item_id for r in results]
    progress(1.0, items)
    return items


#: read errors of remote sources that another attempt may not meet (GDAL/curl wording); ingest reports every
#: unreadable source as an ``IngestError``, so these are told apart by their message
_TRANSIENT_READ = re.compile(
    r"CURL error|could not connect|connection (reset|refused|timed out)|timed out|temporar|"
    r"HTTP response code: (429|5\d\d)|could not resolve",
    re.IGNORECASE,
)


def is_permanent(exc: BaseException) -> bool:
    """Bad input (fails at once) vs. transient trouble (I/O, network, catalog conflicts: retried)."""
    if isinstance(exc, IngestError) and _TRANSIENT_READ.search(str(exc)):
        return False
    return isinstance(exc, (PermanentJobError, IngestError, SourceError))


def one_line(exc: BaseException) -> str:
    """An exception as one line (its first), as job errors and the CLI report it; the type if it says nothing."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class WorkerOptions:
    """Lease, poll and backoff timings of a worker: a dead worker's job is retried after its lease."""

    lease: float = 60.0  # seconds a claim is valid without renewal; a dead worker's job waits this long
    poll: float = 0.5  # seconds between queue polls when idle
    backoff: float = 2.0  # first retry delay (doubles per attempt, capped at 5 minutes)


class JobWorker:
    """Runs jobs from ``store`` one at a time until ``stop`` is set (a thread in ``serve`` or a process)."""

    def __init__(self, warehouse: Warehouse, store: JobStore, options: WorkerOptions = WorkerOptions(), name: str = ""):
        self.warehouse = warehouse
        self.store = store
        self.options = options
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.wake = threading.Event()

    def run(self, stop: threading.Event) -> None:
        """Run jobs until ``stop`` is set; a database outage is logged and waited out, never fatal."""
        while not stop.is_set():
            try:
                ran = self.run_once()
            except Exception:  # the database is down or locked: keep the worker alive and try again
                log.warning("job worker %s: queue unavailable", self.name, exc_info=True)
                ran = False
            if not ran:
                self.wake.wait(self.options.poll)
                self.wake.clear()

    def run_once(self) -> bool:
        """Claim and run one job; ``False`` if the queue had nothing runnable."""
        job = self.store.claim(self.name, self.options.lease)
        if job is None:
            return False
        done = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(job, done), daemon=True, name=f"lease-{job.id[:8]}")
        renewer.start()
        last = {"at": 0.0, "items": len(job.items)}

        def report(fraction: float, items: list[str]) -> None:
            # every commit is recorded at once (a retry must skip it); mere progress at most every 0.5 s,
            # since each report is a write transaction on the catalog's database
            now = time.monotonic()
            if len(items) != last["items"] or now - last["at"] >= 0.5:
                self.store.report(job, fraction, self.options.lease, items)
                last.update(at=now, items=len(items))

        try:
            items = run_ingest(self.warehouse, job, report)
        except LeaseLost:
            log.warning("job %s: lease lost, another worker has it", job.id)
            return True
        except Exception as exc:
            reason = one_line(exc)
            try:
                if is_permanent(exc) or job.attempts >= job.max_attempts:
                    self.store.fail(job, reason)
                else:
                    self.store.retry_later(job, reason, min(self.options.backoff * 2 ** (job.attempts - 1), 300.0))
            except LeaseLost:
                log.warning("job %s: lease lost while recording its failure", job.id)
            log.debug("job %s error", job.id, exc_info=True)
            return True
        finally:
            done.set()
            renewer.join()
        try:
            self.store.succeed(job, items)
        except LeaseLost:
            log.warning("job %s: lease lost before its success was recorded", job.id)
        return True

    def _renew(self, job: Job, done: threading.Event) -> None:
        while not done.wait(self.options.lease / 3):
            try:
                self.store.renew(job, self.options.lease)
            except LeaseLost:
                return
            except Exception:
                log.warning("job %s: lease renewal failed", job.id, exc_info=True)


class WorkerPool:
    """``count`` worker threads sharing one store (``serve --job-workers``)."""

    def __init__(self, warehouse: Warehouse, store: JobStore, count: int, options: WorkerOptions = WorkerOptions()):
        self.workers = [JobWorker(warehouse, store, options) for _ in range(count)]
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the worker threads (daemons: they never keep the server process alive)."""
        for worker in self.workers:
            thread = threading.Thread(
                target=worker.run, args=(self.stop_event,), daemon=True, name=f"job-{worker.name}"
            )
            thread.start()
            self.threads.append(thread)

    def wake(self) -> None:
        """A job was just submitted in this process: skip the poll delay."""
        for worker in self.workers:
            worker.wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the workers after their current job (or ``timeout``): their leases let others resume it."""
        self.stop_event.set()
        self.wake()
        for thread in self.threads:
            thread.join(timeout)
