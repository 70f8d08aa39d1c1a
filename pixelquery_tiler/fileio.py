"""The warehouse's file I/O boundary.

Every byte the warehouse reads or writes goes through a ``pyarrow.fs`` filesystem rooted at the warehouse
URI, so the same code serves a local folder, ``s3://bucket/prefix`` (or any pyarrow filesystem). Paths stored
in the catalog are *relative* to the warehouse root: a warehouse can be copied or mirrored without rewriting
its catalog.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs


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
    """A pyarrow filesystem plus the warehouse root inside it."""

    def __init__(self, uri: str):
        self.uri = normalize_uri(uri)
        self.fs, self.root = pafs.FileSystem.from_uri(self.uri if "://" in self.uri else Path(self.uri).as_uri())
        self.root = self.root.rstrip("/")
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)

    def full(self, relpath: str) -> str:
        """The path inside the filesystem: the catalog stores relative paths, the filesystem wants full ones."""
        return f"{self.root}/{relpath.lstrip('/')}"

    def uri_of(self, relpath: str) -> str:
        """A full URI, for libraries that open files themselves (pyiceberg, GDAL) rather than through ``fs``."""
        return f"{self.uri}/{relpath.lstrip('/')}"

    def makedirs(self, reldir: str) -> None:
        """Create a directory and its parents (a no-op on object stores, which have no directories)."""
        self.fs.create_dir(self.full(reldir), recursive=True)

    def open_output(self, relpath: str) -> pa.NativeFile:
        """A write stream, parents created first: chunk files are written once, never opened for update."""
        parent = relpath.rsplit("/", 1)[0] if "/" in relpath else ""
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
