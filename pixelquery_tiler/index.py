"""In-memory index of a collection at one table snapshot.

Tiles never scan Iceberg: the catalog rows are loaded once into numpy arrays, sorted by (item, level), and a
lookup first filters the (few) items by bbox/time/visibility, picks a level per item, then tests only that
item-level's row range. Cost grows with the number of items touched, not with the table size.

An index is immutable; a refresh builds a new one (reading only the data files new snapshots added) and
swaps it in, so concurrent requests always see a consistent view.

Time travel: an item is visible at snapshot S when it was added at or before S and not deleted at or before S.
The head rows hold every item not deleted; rows of deleted items are kept aside with the history position of
their delete, and :meth:`CollectionIndex.as_of` returns an index that also holds the deleted items still
visible at S (the head index itself when none are).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import threading
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, TypeVar, cast
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from cachetools import LRUCache

from .catalog import ARROW_SCHEMA, SnapshotInfo
from .errors import NotFound

T = TypeVar("T")


class SnapshotNotFound(NotFound):
    """The snapshot id is not in the collection's history."""


#: the epoch in the time zone Arrow gives UTC timestamps (``zoneinfo``), so items compare and print as before
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))


def _us(value: dt.datetime) -> int:
    """Microseconds since the epoch (rounded: a float's seconds times 1e6 may fall just below the integer)."""
    return round(value.timestamp() * 1_000_000)


def _band_key(rows: pa.Table) -> pa.ChunkedArray:
    """One string per row naming its band list: rows of one band group share it."""
    column = rows.column("bands").cast(pa.list_(pa.string()))  # binary_join has no large_list kernel
    return pc.binary_join(column, "\x1f")  # type: ignore[return-value]  # chunked in, chunked out


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a build makes ~10 objects per item that are never cyclic garbage.

    CPython's collector runs every ~700 new objects and rescans the older generations as they grow: at 10,000
    items that was 0.1-0.2 s of a 0.35 s index build (measured). Re-enabled on exit unless it was already off.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    #: band group of a multi-resolution item (0 = finest); each group is its own entry of ``items``
    group: int = 0
    #: every band of the item over all its groups, finest group first (what describes the item as a whole)
    scene_bands: tuple[str, ...] = ()


class CollectionIndex:
    """All rows of a collection at ``snapshot_id`` (the table head when built)."""

    def __init__(
        self, rows: pa.Table, snapshots: list[SnapshotInfo], deleted: list[tuple[int, pa.Table]] | None = None
    ):
        with _gc_paused():
            self._load(rows, snapshots, deleted)

    def _load(self, rows: pa.Table, snapshots: list[SnapshotInfo], deleted: list[tuple[int, pa.Table]] | None) -> None:
        #: ``(history position of the delete, rows it removed)`` of deleted items, for :meth:`as_of`
        self.deleted = deleted or []
        self._as_of_cache: LRUCache[tuple[int, ...], CollectionIndex] = LRUCache(maxsize=4)
        self._as_of_lock = threading.Lock()
        #: facts its readers derive from this (immutable) index, e.g. a view's zoom range per TileMatrixSet
        self._derived: LRUCache[Hashable, object] = LRUCache(maxsize=1024)
        #: the same for facts per item-level (a read over many items remembers many): apart, so they cannot evict
        #: the per-view facts above
        self._derived_per_item: LRUCache[Hashable, object] = LRUCache(maxsize=2048)
        self._derived_lock = threading.Lock()
        self.snapshots = snapshots
        self.snapshot_id = snapshots[-1].snapshot_id if snapshots else None
        self._snap_by_id = {s.snapshot_id: s for s in snapshots}
        self._pos_by_id = {s.snapshot_id: i for i, s in enumerate(snapshots)}
        snap_by_item = {s.item_id: s for s in snapshots if s.item_id}

        if rows.num_rows:
            # an item's band groups (rows sharing a band list, one pixel grid each) are contiguous entries
            key = _band_key(rows)
            order: list[tuple[str, Literal["ascending", "descending"]]] = [
                ("item_id", "ascending"),
                ("_group", "ascending"),
                ("level", "ascending"),
                ("batch_index", "ascending"),
            ]
            rows = rows.append_column("_group", key).sort_by(order).drop_columns(["_group"])
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
        # one pass over (entry, level) segments in numpy; Python only loops over segments, never over rows. An
        # entry is one band group of one item (rows are sorted by item, band group, level)
        groups = _band_key(rows).to_numpy(zero_copy_only=False) if n else item_ids
        new_item = (
            np.r_[True, (item_ids[1:] != item_ids[:-1]) | (groups[1:] != groups[:-1])] if n else np.zeros(0, bool)
        )
        new_level = np.r_[True, self.level[1:] != self.level[:-1]] if n else np.zeros(0, bool)
        seg_starts = np.flatnonzero(new_item | new_level)
        seg_ends = np.r_[seg_starts[1:], n].astype(np.int64) if n else seg_starts.astype(np.int64)
        starts = np.flatnonzero(new_item)
        first_seg = np.searchsorted(seg_starts, starts)  # rows are sorted by level: an item's first segment is L0
        l0_bounds = (
            np.stack(
                [
                    np.minimum.reduceat(self.west, seg_starts)[first_seg],
                    np.minimum.reduceat(self.south, seg_starts)[first_seg],
                    np.maximum.reduceat(self.east, seg_starts)[first_seg],
                    np.maximum.reduceat(self.north, seg_starts)[first_seg],
                ],
                axis=1,
            )
            if n
            else np.zeros((0, 4))
        )
        seg_item = (np.cumsum(new_item)[seg_starts] - 1).tolist()
        seg_level = self.level[seg_starts].tolist()
        seg_res = rows.column("res_x").to_numpy()[seg_starts].tolist() if n else []
        first_columns = ["item_id", "product", "crs", "bands", "dtype", "nodata"]
        firsts = rows.select([*first_columns, "datetime"])
        firsts = firsts.take(starts) if n else firsts
        # column by column: ~4x faster than one dict per item (10,000 items: the index build is start-up time)
        first: dict[str, list[Any]] = {c: cast("list[Any]", firsts.column(c).to_pylist()) for c in first_columns}
        count = firsts.num_rows
        self.item_time = firsts.column("datetime").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
        # from the integers: Arrow's own conversion of tz-aware timestamps is ~5x slower
        first["datetime"] = [_EPOCH + dt.timedelta(microseconds=us) for us in self.item_time.tolist()]
        self._item_rows: list[dict[int, tuple[int, int]]] = [{} for _ in range(count)]  # level -> (start, stop)
        resolutions: list[list[float]] = [[] for _ in range(count)]
        for item, level, a, b, res in zip(
            seg_item, seg_level, seg_starts.tolist(), seg_ends.tolist(), seg_res, strict=True
        ):
            self._item_rows[item][level] = (a, b)
            resolutions[item].append(float(res))
        bands = [tuple(b) for b in first["bands"]]
        group, scene = self._group_entries(first["item_id"], resolutions, bands)
        bboxes = [tuple(b) for b in l0_bounds.tolist()]
        ids, products, times, crss = first["item_id"], first["product"], first["datetime"], first["crs"]
        dtypes, nodatas = first["dtype"], first["nodata"]
        self.items: list[ItemView] = [
            ItemView(
                item_id=ids[i],
                snapshot=snap_by_item.get(ids[i]),
                product=products[i],
                datetime=times[i],
                crs=crss[i],
                bbox=bboxes[i],
                bands=bands[i],
                dtype=dtypes[i],
                nodata=nodatas[i],
                levels=tuple(self._item_rows[i]),
                resolutions=tuple(resolutions[i]),
                group=group[i],
                scene_bands=scene[i],
            )
            for i in range(count)
        ]
        self._item_pos = {it.item_id: i for i, it in enumerate(self.items) if it.group == 0}
        self.item_bbox = np.asarray(l0_bounds, float).reshape(-1, 4)
        # position of the adding snapshot in history; items whose snapshot was expired count as oldest
        self.item_snap_pos = np.array(
            [self._pos_by_id.get(it.snapshot.snapshot_id, -1) if it.snapshot else -1 for it in self.items], np.int64
        )

    def _group_entries(
        self, item_ids: list[str], resolutions: list[list[float]], bands: list[tuple[str, ...]]
    ) -> tuple[list[int], list[tuple[str, ...]]]:
        """Each entry's band-group number (finest first) and the item's full band list (``scene_bands``)."""
        by_item: dict[str, list[int]] = {}
        for pos, item_id in enumerate(item_ids):
            by_item.setdefault(item_id, []).append(pos)
        self._entries = by_item
        group, scene = [0] * len(item_ids), list(bands)
        for positions in by_item.values():
            if len(positions) > 1:  # a multi-resolution item (few): order its groups, share its band list
                positions.sort(key=lambda p: (resolutions[p][0], p))
                all_bands = tuple(b for p in positions for b in bands[p])
                for g, p in enumerate(positions):
                    group[p], scene[p] = g, all_bands
        return group, scene

    def item_entries(self, item_id: str) -> list[int]:
        """Positions of all band-group entries of an item, finest group first (empty if unknown)."""
        return list(self._entries.get(item_id, ()))

    @classmethod
    def empty(cls) -> CollectionIndex:
        """The index of a collection without data (a new table), so readers need no special case."""
        return cls(ARROW_SCHEMA.empty_table(), [])

    def __len__(self) -> int:
        return self.rows.num_rows

    def snapshot(self, snapshot_id: int) -> SnapshotInfo:
        """A snapshot of the table history by id; ``SnapshotNotFound`` (a 404) for an unknown one."""
        try:
            return self._snap_by_id[snapshot_id]
        except KeyError:
            raise SnapshotNotFound(f"snapshot {snapshot_id} not found") from None

    def as_of(self, snapshot_id: int) -> CollectionIndex:
        """An index holding every item visible at ``snapshot_id``, including items deleted after it.

        Filter it with ``select_items(snapshot_id=...)`` as usual (it also holds items added later). Raises
        ``SnapshotNotFound`` for an unknown id.
        """
        pos = self._pos_by_id[self.snapshot(snapshot_id).snapshot_id]
        later = tuple(i for i, (deleted_at, _) in enumerate(self.deleted) if deleted_at > pos)
        if not later:
            return self
        with self._as_of_lock:
            if (hit := self._as_of_cache.get(later)) is not None:
                return hit
        rows = pa.concat_tables([self.rows, *(self.deleted[i][1].cast(self.rows.schema) for i in later)])
        index = CollectionIndex(rows, self.snapshots)
        with self._as_of_lock:
            self._as_of_cache[later] = index
        return index

    def remembered(self, key: Hashable, compute: Callable[[], T], *, per_item: bool = False) -> T:
        """``compute()``, remembered on this index under ``key``: the index never changes, so neither does it.

        ``per_item``: a fact about one item (or item-level), kept in its own bounded store."""
        store = self._derived_per_item if per_item else self._derived
        with self._derived_lock:
            hit = store.get(key)
        if hit is not None:
            return hit  # type: ignore[return-value]  # stored by this method under the same key
        value = compute()
        with self._derived_lock:
            store[key] = value
        return value

    def item(self, item_id: str) -> ItemView | None:
        """An item by id, ``None`` if the index does not hold it (deleted or newer than the index)."""
        pos = self._item_pos.get(item_id)
        return self.items[pos] if pos is not None else None

    def item_position(self, item_id: str) -> int | None:
        """An item's position in ``items`` (the index's arrays are by position), or ``None``."""
        return self._item_pos.get(item_id)

    @cached_property
    def dates(self) -> list[str]:
        """Distinct acquisition dates (``YYYY-MM-DD``), oldest first."""
        return sorted({it.datetime.astimezone(dt.UTC).strftime("%Y-%m-%d") for it in self.items})

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
            only = np.zeros_like(keep)
            only[self._entries.get(item_id, [])] = True
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
        """The rows ``[start, stop)`` of one item's level: rows are sorted by item and level."""
        return self._item_rows[item_pos][level]
