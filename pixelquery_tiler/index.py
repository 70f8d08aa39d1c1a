"""In-memory index of a collection at one table snapshot.

Tiles never scan Iceberg: the catalog rows are loaded once into numpy arrays, sorted by (item, level), and a
lookup first filters the (few) items by bbox/time/visibility, picks a level per item, then tests only that
item-level's row range. Cost grows with the number of items touched, not with the table size.

An index is immutable; a refresh builds a new one (reading only the data files new snapshots added) and
swaps it in, so concurrent requests always see a consistent view.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .catalog import ARROW_SCHEMA, SnapshotInfo
from .errors import NotFound


class SnapshotNotFound(NotFound):
    """The snapshot id is not in the collection's history."""


def _us(value: dt.datetime) -> int:
    return int(value.timestamp() * 1_000_000)


@dataclass(frozen=True)
class ItemView:
    """Per-item facts derived from its rows."""

    item_id: str
    snapshot: SnapshotInfo | None
    product: str
    datetime: dt.datetime
    crs: str
    bbox: tuple[float, float, float, float]
    bands: tuple[str, ...]
    dtype: str
    nodata: float | None
    levels: tuple[int, ...]
    resolutions: tuple[float, ...]  # res_x per level


class CollectionIndex:
    """All rows of a collection at ``snapshot_id`` (the table head when built)."""

    def __init__(self, rows: pa.Table, snapshots: list[SnapshotInfo]):
        self.snapshots = snapshots
        self.snapshot_id = snapshots[-1].snapshot_id if snapshots else None
        self._snap_by_id = {s.snapshot_id: s for s in snapshots}
        self._pos_by_id = {s.snapshot_id: i for i, s in enumerate(snapshots)}
        snap_by_item = {s.item_id: s for s in snapshots if s.item_id}

        rows = rows.sort_by([("item_id", "ascending"), ("level", "ascending"), ("batch_index", "ascending")]) if rows.num_rows else rows
        self.rows = rows
        n = rows.num_rows
        col = lambda name: rows.column(name).to_numpy()  # noqa: E731
        self.minx, self.miny, self.maxx, self.maxy = (col(c) for c in ("minx", "miny", "maxx", "maxy"))
        self.west, self.south, self.east, self.north = (col(c) for c in ("west", "south", "east", "north"))
        self.level = col("level").astype(np.int32)
        self.height, self.width = col("height").astype(np.int64), col("width").astype(np.int64)
        self.batch_index = col("batch_index").astype(np.int64)
        self.chunk_file = rows.column("chunk_file").to_pylist() if n else []
        self.transform = (
            np.asarray(pc.list_flatten(rows.column("transform")).to_numpy()).reshape(n, 6) if n else np.zeros((0, 6))
        )

        item_ids = rows.column("item_id").to_numpy(zero_copy_only=False) if n else np.array([], object)
        starts = np.flatnonzero(np.r_[True, item_ids[1:] != item_ids[:-1]]) if n else np.array([], np.int64)
        ends = np.r_[starts[1:], n].astype(np.int64) if n else np.array([], np.int64)
        self.items: list[ItemView] = []
        self._item_rows: list[dict[int, tuple[int, int]]] = []  # level -> (start, stop)
        for s, e in zip(starts, ends):
            first = rows.slice(int(s), 1).to_pylist()[0]
            lv = self.level[s:e]
            lv_starts = np.flatnonzero(np.r_[True, lv[1:] != lv[:-1]])
            lv_ends = np.r_[lv_starts[1:], e - s]
            ranges = {int(lv[a]): (int(s + a), int(s + b)) for a, b in zip(lv_starts, lv_ends)}
            l0 = ranges[min(ranges)]
            self.items.append(
                ItemView(
                    item_id=first["item_id"],
                    snapshot=snap_by_item.get(first["item_id"]),
                    product=first["product"],
                    datetime=first["datetime"],
                    crs=first["crs"],
                    bbox=(
                        float(self.west[l0[0] : l0[1]].min()), float(self.south[l0[0] : l0[1]].min()),
                        float(self.east[l0[0] : l0[1]].max()), float(self.north[l0[0] : l0[1]].max()),
                    ),
                    bands=tuple(first["bands"]),
                    dtype=first["dtype"],
                    nodata=first["nodata"],
                    levels=tuple(sorted(ranges)),
                    resolutions=tuple(float(col_res) for col_res in (rows.column("res_x")[ranges[k][0]].as_py() for k in sorted(ranges))),
                )
            )
            self._item_rows.append(ranges)
        self._item_pos = {it.item_id: i for i, it in enumerate(self.items)}
        self.item_bbox = np.array([it.bbox for it in self.items], float).reshape(-1, 4)
        self.item_time = np.array([_us(it.datetime) for it in self.items], np.int64)
        # position of the adding snapshot in history; items whose snapshot was expired count as oldest
        self.item_snap_pos = np.array(
            [self._pos_by_id.get(it.snapshot.snapshot_id, -1) if it.snapshot else -1 for it in self.items], np.int64
        )

    @classmethod
    def empty(cls) -> "CollectionIndex":
        return cls(ARROW_SCHEMA.empty_table(), [])

    def __len__(self) -> int:
        return self.rows.num_rows

    def snapshot(self, snapshot_id: int) -> SnapshotInfo:
        try:
            return self._snap_by_id[snapshot_id]
        except KeyError:
            raise SnapshotNotFound(f"snapshot {snapshot_id} not found") from None

    def item(self, item_id: str) -> ItemView | None:
        pos = self._item_pos.get(item_id)
        return self.items[pos] if pos is not None else None

    def item_position(self, item_id: str) -> int | None:
        return self._item_pos.get(item_id)

    @cached_property
    def dates(self) -> list[str]:
        """Distinct acquisition dates (``YYYY-MM-DD``), oldest first."""
        return sorted({it.datetime.astimezone(dt.timezone.utc).strftime("%Y-%m-%d") for it in self.items})

    def select_items(
        self,
        bbox: tuple[float, float, float, float] | None = None,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        snapshot_id: int | None = None,
        item_id: str | None = None,
        product: str | None = None,
    ) -> np.ndarray:
        """Positions of visible items matching the filters, newest acquisition first."""
        keep = np.ones(len(self.items), bool)
        if snapshot_id is not None:
            keep &= self.item_snap_pos <= self._pos_by_id[self.snapshot(snapshot_id).snapshot_id]
        if item_id is not None:
            pos = self._item_pos.get(item_id)
            only = np.zeros_like(keep)
            if pos is not None:
                only[pos] = True
            keep &= only
        if bbox is not None and len(self.items):
            w, s, e, n = bbox
            b = self.item_bbox
            keep &= (b[:, 0] <= e) & (b[:, 2] >= w) & (b[:, 1] <= n) & (b[:, 3] >= s)
        if start is not None:
            keep &= self.item_time >= _us(start)
        if end is not None:
            keep &= self.item_time <= _us(end)
        if product is not None:
            keep &= np.array([it.product == product for it in self.items], bool)
        positions = np.flatnonzero(keep)
        # newest acquisition first; ties: the later snapshot wins
        order = np.lexsort((-self.item_snap_pos[positions], -self.item_time[positions]))
        return positions[order]

    def chunk_rows(self, item_pos: int, level: int, bounds: tuple[float, float, float, float]) -> np.ndarray:
        """Row numbers of one item-level whose native bounds intersect ``bounds`` (item CRS)."""
        start, stop = self._item_rows[item_pos][level]
        minx, miny, maxx, maxy = bounds
        sl = slice(start, stop)
        hit = (self.minx[sl] < maxx) & (self.maxx[sl] > minx) & (self.miny[sl] < maxy) & (self.maxy[sl] > miny)
        return np.flatnonzero(hit) + start

    def item_row_range(self, item_pos: int, level: int) -> tuple[int, int]:
        return self._item_rows[item_pos][level]
