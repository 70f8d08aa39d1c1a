"""Pipelines: a ``pipeline.yaml`` of ingest jobs, validated up front and run incrementally (CONTRACT "Pipelines").

The file is checked with a pydantic schema before anything runs (unknown keys, missing collection: one line
naming the key), then every job's sources are listed (``files`` globs, ``s3`` prefixes, ``stac`` searches),
sources already ingested into the target collection are skipped, and every remaining source's header is read:
an unreadable source fails the run before the first commit. Each item then lands as its own snapshot.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .ingest import IngestError, check_name
from .sources import RASTER_SUFFIXES, SourceError, resolve, s3_filesystem, stac_self_href

if TYPE_CHECKING:
    from .scenes import ItemPlan

log = logging.getLogger(__name__)


class PipelineError(IngestError):
    """A bad pipeline file or job; nothing was committed."""


def _iso(value: Any) -> Any:
    """YAML reads ``2023-05-02`` as a date: accept it (and datetimes) as ISO 8601 text."""
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StacSearch(_Strict):
    """A STAC API item search (pystac-client ``Client.search`` arguments)."""

    url: str
    collections: list[str] | None = None
    bbox: list[float] | None = Field(default=None, min_length=4, max_length=4)
    datetime: str | None = None
    ids: list[str] | None = None
    query: dict[str, Any] | None = None
    assets: list[str] | None = None
    limit: int | None = Field(default=None, gt=0)

    _dates = field_validator("datetime", mode="before")(_iso)


class IngestOptions(_Strict):
    """What one ingest is asked to do besides its sources: the options of ``ingest`` on the command line, shared by
    a pipeline job and a ``POST /jobs`` body (``service.JobRequest``), so both validate them the same way."""

    collection: str
    scene: bool = False
    product: str | None = None
    datetime: str | None = None
    bands: list[str] | None = None
    assets: list[str] | None = None
    #: ingest sources that are already items of the collection (as ``ingest --allow-duplicate``)
    allow_duplicate: bool = False

    _dates = field_validator("datetime", mode="before")(_iso)

    @field_validator("collection")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name("collection", value)  # an IngestError is a ValueError: pydantic reports it


class Job(IngestOptions):
    """One ingest job: a target collection and exactly one kind of source."""

    files: str | list[str] | None = None
    s3: str | None = None
    stac: StacSearch | None = None

    @field_validator("s3")
    @classmethod
    def _s3_uri(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("s3://"):
            raise ValueError(f"expected an s3://bucket/prefix URI, got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Job:
        given = [k for k in ("files", "s3", "stac") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of files, s3, stac (got {', '.join(given) or 'none'})")
        return self


class Pipeline(_Strict):
    warehouse: str
    catalog_uri: str | None = None
    jobs: list[Job] = Field(min_length=1)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    if err["type"] == "missing":
        return f"{loc}: required key missing"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def load_pipeline(path: str | os.PathLike) -> tuple[Pipeline, Path]:
    """The validated pipeline and the folder its relative paths resolve against (the file's own)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PipelineError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"{path}: cannot read ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PipelineError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: expected a mapping with warehouse and jobs")
    try:
        return Pipeline.model_validate(raw), path.resolve().parent
    except ValidationError as exc:
        raise PipelineError(f"{path}: {_first_error(exc)}") from None


# -- listing a job's sources -----------------------------------------------------------------------------------
@dataclass
class JobSources:
    """What one job would ingest: source strings (paths/URLs/URIs) and STAC documents from a search."""

    paths: list[str] = field(default_factory=list)
    stac_docs: list[dict[str, Any]] = field(default_factory=list)


def _glob(job: Job, base: Path, key: str) -> list[str]:
    patterns = [job.files] if isinstance(job.files, str) else list(job.files or [])
    out: list[str] = []
    for pattern in patterns:
        full = pattern if os.path.isabs(os.path.expanduser(pattern)) else str(base / pattern)
        matches = sorted(p for p in glob.glob(os.path.expanduser(full), recursive=True) if os.path.isfile(p))
        if not matches:
            raise PipelineError(f"{key}.files: {pattern!r} matches no file")
        out.extend(matches)
    return out


def _s3_listing(prefix: str, key: str) -> list[str]:
    import pyarrow.fs as pafs

    try:
        fs, path = s3_filesystem(prefix)
        infos = fs.get_file_info(pafs.FileSelector(path.rstrip("/"), recursive=True))
    except Exception as exc:  # pyarrow's S3 errors are OSError/ArrowInvalid with the service's message
        raise PipelineError(f"{key}.s3: cannot list {prefix} ({str(exc).splitlines()[0]})") from None
    bucket_uri = prefix.split("://", 1)[0] + "://"
    found = sorted(
        bucket_uri + i.path for i in infos if i.type == pafs.FileType.File and i.path.lower().endswith(RASTER_SUFFIXES)
    )
    if not found:
        raise PipelineError(f"{key}.s3: no raster under {prefix}")
    return found


def _stac_search(search: StacSearch, key: str) -> list[dict[str, Any]]:
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    params = search.model_dump(exclude={"url", "assets", "limit"}, exclude_none=True)
    try:
        client = Client.open(search.url)
        found = client.search(**params, max_items=search.limit)
        return [item.to_dict() for item in found.items()]
    except (APIError, OSError, ValueError) as exc:
        raise PipelineError(f"{key}.stac: search at {search.url} failed ({str(exc).splitlines()[0][:200]})") from None
    except Exception as exc:  # requests' errors (connection refused...) are not OSError subclasses everywhere
        raise PipelineError(f"{key}.stac: {search.url} unreachable ({type(exc).__name__})") from None


def list_sources(job: Job, base: Path, key: str) -> JobSources:
    """What one pipeline job names: files by glob, an S3 listing, or STAC search results."""
    if job.files is not None:
        return JobSources(paths=_glob(job, base, key))
    if job.s3 is not None:
        return JobSources(paths=_s3_listing(job.s3, key))
    assert job.stac is not None
    return JobSources(stac_docs=_stac_search(job.stac, key))


# -- running ---------------------------------------------------------------------------------------------------
@dataclass
class RunReport:
    """What a pipeline run did: items ingested (or planned), sources skipped as already ingested, failures."""

    ingested: list[str] = field(default_factory=list)  # item ids (planned ones on a dry run)
    skipped: list[str] = field(default_factory=list)  # sources already in their collection
    failed: list[str] = field(default_factory=list)  # sources of items whose ingest failed
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        """The report as ``run --json`` prints it."""
        return {"ingested": self.ingested, "skipped": self.skipped, "failed": self.failed, "dry_run": self.dry_run}


def run_pipeline(
    path: str | os.PathLike,
    dry_run: bool = False,
    on_plans: Callable[[int], None] | None = None,
    on_item: Callable[[str], object] | None = None,
) -> RunReport:
    """Validate, list, skip what is ingested, check every header, then ingest item by item.

    Everything that can fail on bad input (schema, listing, headers, duplicates inside a run) fails before the
    first commit. ``on_plans(n)`` is told how many items will be ingested, ``on_item(item_id)`` after each.
    """
    from . import catalog as cat
    from .scenes import check_duplicates, ingested_sources, plan_items
    from .warehouse import Warehouse

    pipeline, base = load_pipeline(path)
    warehouse = pipeline.warehouse
    if "://" not in warehouse:
        warehouse = str(base / os.path.expanduser(warehouse))
    catalog_uri = pipeline.catalog_uri
    if catalog_uri and "://" not in catalog_uri and not os.path.isabs(catalog_uri):
        catalog_uri = str(base / catalog_uri)
    wh = Warehouse(warehouse, catalog_uri=catalog_uri)
    report = RunReport(dry_run=dry_run)
    work: list[tuple[str, ItemPlan]] = []  # (collection, item) in run order
    for n, job in enumerate(pipeline.jobs):
        key = f"jobs.{n}"
        listed = list_sources(job, base, key)
        # a dry run on a warehouse that does not exist yet must not create its catalog
        fresh = dry_run and "://" not in warehouse and not os.path.isdir(warehouse)
        table = None if fresh else cat.load_table(wh.catalog, job.collection)
        snaps = cat.snapshots(table) if table is not None else []
        known = {} if job.allow_duplicate else ingested_sources(snaps)
        paths: list[str] = []
        for p in listed.paths:
            (report.skipped if resolve(p) in known else paths).append(p)
        docs = []
        for doc in listed.stac_docs:
            loc = stac_self_href(doc) or f"stac:{doc.get('id')}"
            if loc in known:
                report.skipped.append(loc)
            else:
                docs.append(doc)
        assets = job.assets or (job.stac.assets if job.stac else None)
        try:
            plans = (
                plan_items(
                    paths,
                    scene=job.scene,
                    assets=assets,
                    product=job.product,
                    datetime=job.datetime,
                    bands=job.bands,
                    stac_docs=docs,
                )
                if paths or docs
                else []
            )
            check_duplicates(plans, snaps, job.allow_duplicate)
        except SourceError as exc:
            raise PipelineError(f"{key}: {exc}") from None
        except IngestError as exc:
            raise PipelineError(f"{key}: {exc}") from None
        work.extend((job.collection, plan) for plan in plans)
    if on_plans:
        on_plans(len(work))
    for collection, plan in work:
        if dry_run:
            report.ingested.append(plan.item_id)
            continue
        try:
            result = wh.ingest(plan, collection)
        except Exception as exc:  # one bad item does not stop the others; the report says which failed
            log.debug("pipeline item %s failed", plan.item_id, exc_info=True)
            report.failed.extend(plan.locations[:1])
            report.errors.append(f"{plan.label}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        report.ingested.append(result.result.item_id)
        if on_item:
            on_item(result.result.item_id)
    return report


PIPELINE_TEMPLATE = """\
# pixelquery-tiler pipeline: `pixelquery-tiler run pipeline.yaml [--dry-run] [--json]`
#
# Each job ingests its sources into a collection. Runs are incremental: a source that is already an item of
# the collection is skipped, so running the same pipeline again ingests only what is new. Relative paths
# resolve against this file's folder. Unknown keys are errors.

warehouse: ./wh                 # a folder, or s3://bucket/prefix (standard AWS environment)
catalog_uri: null               # optional: SQLAlchemy URI, SQLite path or Iceberg REST URL (as --catalog-uri)

jobs:
  # Local files: a glob (** recurses). Landsat C2 / Sentinel-2 L2A band files are grouped into one item per
  # scene; any other file is an item of its own.
  - collection: landsat
    files: "data/**/LC08_*_SR_B*.TIF"

  # A STAC API search (pystac-client): every found item becomes one item, its raster assets its bands.
  # - collection: sentinel2
  #   stac:
  #     url: https://earth-search.example/v1
  #     collections: [sentinel-2-l2a]
  #     bbox: [-55.0, -25.3, -54.6, -25.0]
  #     datetime: 2020-05-01/2020-06-30
  #     assets: [red, green, blue, nir]
  #     limit: 20

  # Every raster under an S3 prefix, with band names and an acquisition time given here.
  # - collection: aerial
  #   s3: s3://bucket/ortho/
  #   bands: [red, green, blue]
  #   datetime: 2023-05-02

  # Other job keys: scene (true: all sources of the job are one item), product (a profile id),
  # assets (STAC asset keys), allow_duplicate (true: ingest sources again).
"""


def write_template(folder: str | os.PathLike = ".") -> Path:
    """Write the commented example ``pipeline.yaml`` into ``folder``; refuses to overwrite one."""
    target = Path(folder) / "pipeline.yaml"
    if target.exists():
        raise PipelineError(f"{target} already exists")
    Path(folder).mkdir(parents=True, exist_ok=True)
    target.write_text(PIPELINE_TEMPLATE)
    return target
