"""The warehouse's file I/O boundary.

Every byte the warehouse reads or writes goes through a ``pyarrow.fs`` filesystem rooted at the warehouse
URI, so the same code serves a local folder, ``s3://bucket/prefix`` (or any pyarrow filesystem). S3 settings
(endpoint, credentials, region) come from ``storage_config``, the same ones pyiceberg's FileIO gets.

Chunk paths stored in the catalog rows are *relative* to the warehouse root, but Iceberg's own metadata
(metadata.json, manifest lists, manifests) records *absolute* file locations, as the Iceberg spec requires.
So a warehouse cannot simply be copied or moved to another path or bucket: the copy's catalog would still
point at the original's files. Move one by re-ingesting, or by registering rewritten metadata with tools
that rewrite table locations (e.g. Iceberg's ``rewrite_table_path`` procedure in Spark).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from .storage_config import StorageConfig, StorageConfigError, describe_os_error, parse_props, split_uri


def normalize_uri(uri: str) -> str:
    """Absolute local path for plain paths and ``file://`` URIs; other URIs unchanged."""
    if "://" not in uri:
        return str(Path(uri).expanduser().resolve())
    if uri.startswith("file://"):
        return str(Path(uri[len("file://") :]).resolve())
    return uri.rstrip("/")


@dataclass(frozen=True)
class FileEntry:
    """A file found under the warehouse root; ``gc`` compares paths and ages against the catalog."""

    path: str  # relative to the warehouse root
    size: int
    mtime: dt.datetime | None


class WarehouseFS:
    """A pyarrow filesystem plus the warehouse root inside it.

    ``props``: catalog properties (``s3.endpoint`` etc.); with the URI's query string and the AWS environment
    they make :attr:`storage`, the one S3 configuration that the Iceberg catalog is opened with too.
    """

    def __init__(self, uri: str, props: Mapping[str, str] | None = None):
        base, uri_props = split_uri(normalize_uri(uri))
        self.uri = base
        #: catalog properties: the URI's query options, overridden by explicit ones (else ``$PIXELQUERY_CATALOG_PROPS``)
        self.props: dict[str, str] = {**uri_props, **(dict(props) if props is not None else parse_props())}
        self.storage = StorageConfig.resolve(props=self.props)
        if base.startswith("s3://"):
            self.fs, self.root = self.storage.s3_filesystem(), base[len("s3://") :]
        else:
            self.fs, self.root = pafs.FileSystem.from_uri(base if "://" in base else Path(base).as_uri())
        self.root = self.root.rstrip("/")
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        self._checked = self.is_local

    def check(self) -> None:
        """Fail with one line (``StorageConfigError``) when a remote warehouse cannot be reached or signed for.

        Called before the first write, so an ingest against a wrong endpoint or without credentials stops
        before any chunk or metadata is written.
        """
        if self._checked:
            return
        if self.uri.startswith("s3://"):
            self.storage.check_credentials()
        try:
            self.fs.get_file_info(self.root)
        except OSError as exc:
            raise StorageConfigError(describe_os_error(exc, self.uri, self.storage)) from None
        self._checked = True

    def full(self, relpath: str) -> str:
        """The path inside the filesystem: the catalog stores relative paths, the filesystem wants full ones."""
        return f"{self.root}/{relpath.lstrip('/')}"

    def uri_of(self, relpath: str) -> str:
        """A full URI, for libraries that open files themselves (pyiceberg, GDAL) rather than through ``fs``."""
        return f"{self.uri}/{relpath.lstrip('/')}"

    def makedirs(self, reldir: str) -> None:
        """Create a directory and its parents (a no-op on object stores, which have no directories)."""
        self.check()
        self.fs.create_dir(self.full(reldir), recursive=True)

    def open_output(self, relpath: str) -> pa.NativeFile:
        """A write stream, parents created first: chunk files are written once, never opened for update."""
        parent = relpath.rsplit("/", 1)[0] if "/" in relpath else ""
        self.check()
        if parent:
            self.makedirs(parent)
        return self.fs.open_output_stream(self.full(relpath))

    def open_input(self, relpath: str) -> pa.NativeFile:
        """Random-access input; memory-mapped for local files so chunk reads are zero-copy."""
        if self.is_local:
            return pa.memory_map(self.full(relpath), "r")
        return self.fs.open_input_file(self.full(relpath))

    def exists(self, relpath: str) -> bool:
        """Whether a file or directory exists (one metadata request on object stores)."""
        return self.fs.get_file_info(self.full(relpath)).type != pafs.FileType.NotFound

    def list_files(self, reldir: str) -> list[FileEntry]:
        """Every file under ``reldir`` (recursive, empty if missing) with UTC mtimes, for ``gc``'s age test."""
        selector = pafs.FileSelector(self.full(reldir), recursive=True, allow_not_found=True)
        out = []
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            rel = info.path[len(self.root) :].lstrip("/")
            mtime = info.mtime
            if mtime is not None and mtime.tzinfo is None:
                mtime = mtime.replace(tzinfo=dt.UTC)
            out.append(FileEntry(rel, info.size or 0, mtime))
        return out

    def delete(self, relpath: str) -> None:
        """Delete one file; only ``gc`` calls it, for files no snapshot references."""
        self.fs.delete_file(self.full(relpath))

    def local_path(self, relpath: str = "") -> str | None:
        """The OS path of a local warehouse (for SQLite), ``None`` for remote ones."""
        if not self.is_local:
            return None
        return os.path.join(self.root, relpath) if relpath else self.root
