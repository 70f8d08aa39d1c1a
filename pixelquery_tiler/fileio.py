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
        return f"{self.root}/{relpath.lstrip('/')}"

    def uri_of(self, relpath: str) -> str:
        return f"{self.uri}/{relpath.lstrip('/')}"

    def makedirs(self, reldir: str) -> None:
        self.fs.create_dir(self.full(reldir), recursive=True)

    def open_output(self, relpath: str) -> pa.NativeFile:
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
        return self.fs.get_file_info(self.full(relpath)).type != pafs.FileType.NotFound

    def list_files(self, reldir: str) -> list[FileEntry]:
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
        self.fs.delete_file(self.full(relpath))

    def local_path(self, relpath: str = "") -> str | None:
        """The OS path of a local warehouse (for SQLite), ``None`` for remote ones."""
        if not self.is_local:
            return None
        return os.path.join(self.root, relpath) if relpath else self.root
