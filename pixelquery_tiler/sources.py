"""Where ingest reads from: local paths, ``http(s)://`` URLs, ``s3://`` URIs and STAC Items.

A *source* is what the user named; its *location* is the resolved form that identifies it in the catalog
(absolute local path, URL or ``s3://`` URI: two names of one file are one source, two copies are two), and its
*GDAL path* is what rasterio opens. Remote rasters go through GDAL's virtual file systems (``/vsicurl/``,
``/vsis3/``), which read by HTTP range request, so ingest never downloads a whole remote file.

Reachability is checked up front (one HEAD-like request or ``stat``) so an unreachable URL or a 404 asset
fails the command with one line before any chunk is written.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .ingest import IngestError
from .storage_config import StorageConfig

log = logging.getLogger(__name__)

#: seconds to wait for a remote source's first byte before calling it unreachable
REMOTE_TIMEOUT = 20
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
_RASTER_TYPES = ("image/tiff", "image/jp2", "image/vnd.stac.geotiff", "application/x-geotiff")
_NON_DATA_ROLES = {"thumbnail", "overview", "metadata", "visual"}


class SourceError(IngestError):
    """A source cannot be resolved, reached or understood; nothing was committed."""


def is_url(location: str) -> bool:
    """Whether a source is fetched over HTTP(S) (range reads through GDAL's ``/vsicurl/``)."""
    return location.startswith(("http://", "https://"))


def resolve(source: str, base: str | None = None) -> str:
    """The resolved location of ``source``: absolute local path, URL or ``s3://`` URI.

    A relative ``source`` resolves against ``base`` (a STAC item's own location) when given.
    """
    source = source.strip()
    if source.startswith("file://"):
        source = urllib.parse.unquote(urllib.parse.urlparse(source).path)
    if is_url(source) or source.startswith(("s3://", "/vsi")) or "://" in source:
        return source
    if base is not None and not os.path.isabs(source):
        if is_url(base) or base.startswith("s3://"):
            return urllib.parse.urljoin(base, source)
        return os.path.normpath(os.path.join(os.path.dirname(base), source))
    return str(Path(source).expanduser().absolute())


def gdal_path(location: str, ranges: bool = True) -> str:
    """What GDAL opens for a resolved location (``/vsicurl/`` for URLs, ``/vsis3/`` for S3).

    ``/vsicurl/`` reads by range request and refuses servers without ranges (dynamic endpoints such as a tile
    server's ``preview.tif``); those are read once, front to back, through ``/vsicurl_streaming/``.
    """
    if is_url(location):
        return f"/vsicurl/{location}" if ranges else f"/vsicurl_streaming/{location}"
    if location.startswith("s3://"):
        return f"/vsis3/{location[len('s3://') :]}"
    return location


def gdal_options() -> dict[str, str]:
    """GDAL configuration for remote reads, from the standard AWS environment.

    GDAL reads ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_REGION`` itself, but names a custom
    endpoint ``AWS_S3_ENDPOINT`` (host only) plus ``AWS_HTTPS``; ``AWS_ENDPOINT_URL`` (what boto3, the AWS CLI
    and pyarrow use, and what the contract names) is translated here. ``GDAL_DISABLE_READDIR_ON_OPEN`` stops
    GDAL from listing the remote folder on every open.
    """
    opts = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_HTTP_TIMEOUT": str(REMOTE_TIMEOUT)}
    config = StorageConfig.resolve()
    if config.endpoint and "AWS_S3_ENDPOINT" not in os.environ:
        parts = urllib.parse.urlparse(config.endpoint)
        opts["AWS_S3_ENDPOINT"] = parts.netloc + parts.path.rstrip("/")
        opts["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
    if config.endpoint and "AWS_VIRTUAL_HOSTING" not in os.environ:
        opts["AWS_VIRTUAL_HOSTING"] = "FALSE"  # S3-compatible servers answer path-style requests
    return opts


def s3_filesystem(uri: str) -> tuple[Any, str]:
    """A ``pyarrow.fs`` filesystem and the path inside it for an ``s3://`` source (the settings GDAL gets).

    On AWS itself (no endpoint, no region) pyarrow's ``from_uri`` asks for the bucket's region; any other
    endpoint has none to ask, so the one configuration of ``storage_config`` is used as is.
    """
    import pyarrow.fs as pafs

    config = StorageConfig.resolve()
    if config.endpoint is None and config.region is None:
        return pafs.FileSystem.from_uri(uri)
    return config.s3_filesystem(), uri[len("s3://") :]


@contextmanager
def remote_env() -> Iterator[None]:
    """A rasterio environment in which :func:`gdal_path` paths of any kind open."""
    import rasterio

    with rasterio.Env(**gdal_options()):
        yield


@dataclass(frozen=True)
class Fingerprint:
    """What the catalog records of a source: location plus what tells a changed file (size, mtime/ETag)."""

    uri: str
    size: int | None = None
    mtime: str | None = None
    etag: str | None = None
    ranges: bool = field(default=True, compare=False)  # the server answers range requests (URLs only)

    def to_json(self) -> dict[str, Any]:
        """The fingerprint as recorded in the catalog (unknown fields and the range flag left out)."""
        return {k: v for k, v in self.__dict__.items() if v is not None and k != "ranges"}


def probe(location: str) -> Fingerprint:
    """Check that a source exists and is readable; its fingerprint. Raises ``SourceError`` with one line."""
    if is_url(location):
        return _probe_url(location)
    if location.startswith("s3://"):
        return _probe_s3(location)
    if location.startswith("/vsi"):
        return Fingerprint(location)
    try:
        st = os.stat(location)
    except FileNotFoundError:
        raise SourceError(f"{location}: no such file") from None
    except OSError as exc:
        raise SourceError(f"{location}: cannot read ({exc.strerror})") from None
    if os.path.isdir(location):
        raise SourceError(f"{location}: is a directory; pass the rasters in it (e.g. {location.rstrip('/')}/*.tif)")
    if not os.access(location, os.R_OK):
        raise SourceError(f"{location}: permission denied")
    mtime = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat()
    return Fingerprint(location, st.st_size, mtime=mtime)


def _probe_url(url: str) -> Fingerprint:
    """One ranged GET (servers that refuse HEAD are common; a 1-byte range is as cheap)."""
    req = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
    try:
        with urllib.request.urlopen(req, timeout=REMOTE_TIMEOUT) as resp:
            headers = resp.headers
            size = None
            if (rng := headers.get("Content-Range")) and "/" in rng and rng.rsplit("/", 1)[1].isdigit():
                size = int(rng.rsplit("/", 1)[1])
            elif headers.get("Content-Length", "").isdigit() and resp.status == 200:
                size = int(headers["Content-Length"])
            return Fingerprint(
                url, size, mtime=headers.get("Last-Modified"), etag=headers.get("ETag"), ranges=resp.status == 206
            )
    except urllib.error.HTTPError as exc:
        raise SourceError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceError(f"{url}: unreachable ({reason})") from None


def _probe_s3(uri: str) -> Fingerprint:
    import pyarrow.fs as pafs

    try:
        fs, path = s3_filesystem(uri)
        info = fs.get_file_info(path)
        if info.type != pafs.FileType.File:
            bucket = path.split("/", 1)[0]
            if fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                raise SourceError(f"{uri}: no such bucket {bucket!r}")
            raise SourceError(f"{uri}: no such object")
    except SourceError:
        raise
    except Exception as exc:  # pyarrow raises OSError/ArrowInvalid with S3 error text
        raise SourceError(f"{uri}: unreachable ({str(exc).splitlines()[0]})") from None
    mtime = info.mtime.astimezone(dt.UTC).isoformat() if info.mtime else None
    return Fingerprint(uri, info.size, mtime=mtime)


def read_text(location: str, limit: int = 16 * 1024 * 1024) -> str:
    """A small document (a STAC item) from a local path, URL or S3 URI."""
    try:
        if is_url(location):
            with urllib.request.urlopen(location, timeout=REMOTE_TIMEOUT) as resp:
                return resp.read(limit).decode("utf-8")
        if location.startswith("s3://"):
            fs, path = s3_filesystem(location)
            with fs.open_input_stream(path) as f:
                return f.read(limit).decode("utf-8")
        with open(location, encoding="utf-8") as f:
            return f.read(limit)
    except urllib.error.HTTPError as exc:
        raise SourceError(f"{location}: HTTP {exc.code} {exc.reason}") from None
    except FileNotFoundError:
        raise SourceError(f"{location}: no such file") from None
    except (OSError, UnicodeDecodeError, urllib.error.URLError) as exc:
        raise SourceError(f"{location}: cannot read ({getattr(exc, 'reason', exc)})") from None


# -- STAC Items ---------------------------------------------------------------------------------------------
def looks_like_stac(location: str) -> bool:
    """A ``.json``/``.geojson`` name (query strings ignored): the contract's marker of a STAC Item source."""
    path = urllib.parse.urlparse(location).path if "://" in location else location
    return PurePosixPath(path).suffix.lower() in (".json", ".geojson")


@dataclass(frozen=True)
class AssetSource:
    """One raster asset of a STAC Item: its resolved location and its bands' names."""

    key: str
    location: str
    bands: tuple[str, ...]  # common names (or the asset key) per band, in file order; () = from the file


@dataclass(frozen=True)
class StacItemSource:
    """A STAC Item as an ingest source (see CONTRACT "Sources and scenes")."""

    location: str
    id: str
    datetime: dt.datetime
    assets: tuple[AssetSource, ...]
    properties: dict[str, Any] = field(default_factory=dict)  # the item's other properties, kept on our item


def _band_names(key: str, asset: dict[str, Any]) -> tuple[str, ...]:
    """Common names from STAC 1.0 ``eo:bands`` or STAC 1.1 ``bands``; else the asset key (single band)."""
    bands = asset.get("eo:bands") or asset.get("bands") or []
    if not bands:
        return ()
    names = []
    for i, band in enumerate(bands, 1):
        name = band.get("common_name") or band.get("eo:common_name") or band.get("name")
        names.append(name or (key if len(bands) == 1 else f"{key}_{i}"))
    return tuple(names)


def _is_raster(asset: dict[str, Any]) -> bool:
    media = (asset.get("type") or "").lower()
    roles = set(asset.get("roles") or [])
    if roles & _NON_DATA_ROLES and "data" not in roles:
        return False
    if media:
        return media.startswith(_RASTER_TYPES)
    href = urllib.parse.urlparse(asset.get("href", "")).path
    return PurePosixPath(href).suffix.lower() in RASTER_SUFFIXES


def parse_stac_item(doc: Any, location: str, assets: list[str] | None = None) -> StacItemSource:
    """The Item at ``location`` (its JSON ``doc``) as a source; ``assets`` picks asset keys.

    Without ``assets`` every data raster asset is a band source (thumbnails, overviews and metadata are not);
    naming an asset explicitly takes it whatever its role.
    """
    from .temporal import parse_instant

    if not isinstance(doc, dict) or doc.get("type") != "Feature" or "stac_version" not in doc:
        raise SourceError(f'{location}: not a STAC Item (needs "type": "Feature" and stac_version)')
    item_id = doc.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise SourceError(f"{location}: STAC Item has no id")
    props = dict(doc.get("properties") or {})
    when_text = props.pop("datetime", None) or props.get("start_datetime")
    if not when_text:
        raise SourceError(f"{location}: STAC Item {item_id} has no datetime")
    try:
        when = parse_instant(str(when_text))
    except ValueError:
        raise SourceError(f"{location}: STAC Item {item_id} has a bad datetime {when_text!r}") from None
    all_assets = doc.get("assets") or {}
    if assets:
        unknown = [k for k in assets if k not in all_assets]
        if unknown:
            raise SourceError(
                f"{location}: STAC Item {item_id} has no asset {unknown[0]!r}; "
                f"it has {', '.join(sorted(all_assets)) or 'none'}"
            )
        keys = list(assets)
    else:
        keys = [k for k, a in all_assets.items() if isinstance(a, dict) and _is_raster(a)]
    if not keys:
        raise SourceError(f"{location}: STAC Item {item_id} has no raster assets")
    picked = []
    for key in keys:
        href = all_assets[key].get("href") if isinstance(all_assets[key], dict) else None
        if not href:
            raise SourceError(f"{location}: asset {key!r} has no href")
        picked.append(AssetSource(key, resolve(href, base=location), _band_names(key, all_assets[key])))
    return StacItemSource(location, item_id, when, tuple(picked), props)


def load_stac_item(location: str, assets: list[str] | None = None) -> StacItemSource:
    """Read and parse a STAC Item file or URL."""
    text = read_text(location)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{location}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_stac_item(doc, location, assets)


def stac_self_href(doc: dict[str, Any]) -> str | None:
    """An item's ``self`` link (where a search result lives), for resolving its relative asset hrefs."""
    for link in doc.get("links") or []:
        if isinstance(link, dict) and link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return None
