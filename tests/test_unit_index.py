"""``CollectionIndex`` on hand-made catalog rows (no Iceberg): which items a pinned snapshot sees, deletes and
``as_of``, the filters of ``select_items`` and their order. End-to-end deletes are in ``test_table_maintenance.py``.

History used throughout: s1 adds A (acquired January), s2 adds B (March), s3 adds C (February), s4 deletes B.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from pixelquery_tiler.catalog import ARROW_SCHEMA, SnapshotInfo
from pixelquery_tiler.index import CollectionIndex, SnapshotNotFound

UTC = dt.UTC
CHUNK = 7680.0


def rows(item_id: str, when: dt.datetime, col: int = 0, product: str = "generic") -> list[dict]:
    """Two levels (30 m, 60 m) of one chunk of an item, at chunk column ``col`` of UTM 21S."""
    x0 = col * CHUNK
    return [
        {
            "item_id": item_id,
            "collection": "c",
            "product": product,
            "datetime": when,
            "tile_id": f"{13 - level}/{col}/0",
            "level": level,
            "crs": "EPSG:32621",
            "minx": x0,
            "miny": -CHUNK,
            "maxx": x0 + CHUNK,
            "maxy": 0.0,
            "west": -61.5 + col * 0.07,
            "south": -0.07,
            "east": -61.43 + col * 0.07,
            "north": 0.0,
            "res_x": res,
            "res_y": res,
            "height": int(CHUNK / res),
            "width": int(CHUNK / res),
            "transform": [res, 0.0, x0, 0.0, -res, 0.0],
            "chunk_file": f"chunks/{item_id}-{level}.arrow",
            "batch_index": 0,
            "bands": ["b1"],
            "dtype": "uint16",
            "nodata": 0.0,
            "band_min": [0.0],
            "band_max": [1.0],
            "band_mean": [0.5],
            "valid_percent": 100.0,
            "cloud_cover": None,
        }
        for level, res in ((0, 30.0), (1, 60.0))
    ]


def table(*parts: list[dict]) -> pa.Table:
    return pa.Table.from_pylist([r for part in parts for r in part], schema=ARROW_SCHEMA)


def snap(sid: int, item_id: str | None, deleted: str | None = None) -> SnapshotInfo:
    props = {"deleted_item": deleted} if deleted else {}
    return SnapshotInfo(sid, sid - 1 or None, sid, dt.datetime(2024, 1, sid, tzinfo=UTC), item_id, None, props)


JAN, FEB, MAR = (dt.datetime(2020, m, 1, 12, tzinfo=UTC) for m in (1, 2, 3))
A, B, C = rows("A", JAN, 0), rows("B", MAR, 1), rows("C", FEB, 2)
HISTORY = [snap(1, "A"), snap(2, "B"), snap(3, "C"), snap(4, None, deleted="B")]


@pytest.fixture(scope="module")
def head() -> CollectionIndex:
    """The head after s4: B's rows are kept aside with the history position of their delete (s4 is 3)."""
    return CollectionIndex(table(A, C), HISTORY, deleted=[(3, table(B))])


def visible(index: CollectionIndex, **filters: object) -> list[str]:
    return [index.items[p].item_id for p in index.select_items(**filters)]  # type: ignore[arg-type]


def test_head_holds_what_was_not_deleted(head: CollectionIndex) -> None:
    assert visible(head) == ["C", "A"]  # newest acquisition first
    assert head.item("B") is None and head.item("A") is not None
    assert head.snapshot_id == 4 and len(head) == 4  # two items x two levels


@pytest.mark.parametrize(
    ("snapshot_id", "expected"),
    [(1, ["A"]), (2, ["B", "A"]), (3, ["B", "C", "A"]), (4, ["C", "A"])],
)
def test_as_of_sees_exactly_the_items_of_that_snapshot(head: CollectionIndex, snapshot_id: int, expected: list) -> None:
    pinned = head.as_of(snapshot_id)
    assert visible(pinned, snapshot_id=snapshot_id) == expected
    deleted_item = pinned.item("B")
    assert (deleted_item is not None) == (snapshot_id < 4)


def test_as_of_reuses_indexes(head: CollectionIndex) -> None:
    assert head.as_of(4) is head  # nothing deleted after the head: no copy
    assert head.as_of(1) is head.as_of(3)  # the same deletes to put back: one cached index


def test_unknown_snapshot_is_not_found(head: CollectionIndex) -> None:
    with pytest.raises(SnapshotNotFound):
        head.as_of(99)
    with pytest.raises(SnapshotNotFound):
        head.select_items(snapshot_id=99)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, ["B", "C", "A"]),
        ({"start": FEB}, ["B", "C"]),
        ({"end": FEB}, ["C", "A"]),  # inclusive at both ends
        ({"start": FEB, "end": FEB}, ["C"]),
        ({"start": FEB + dt.timedelta(microseconds=1), "end": MAR - dt.timedelta(microseconds=1)}, []),
        ({"bbox": (-61.5, -0.07, -61.45, 0.0)}, ["A"]),
        ({"bbox": (-61.44, -0.07, -61.37, 0.0)}, ["B", "A"]),  # overlapping A's east edge counts
        ({"item_id": "C"}, ["C"]),
        ({"item_id": "nope"}, []),
        ({"product": "landsat-c2-l2"}, ["B"]),
        ({"snapshot_id": 2, "start": FEB}, ["B"]),
    ],
)
def test_select_items_filters(filters: dict, expected: list[str]) -> None:
    index = CollectionIndex(table(A, rows("B", MAR, 1, product="landsat-c2-l2"), C), HISTORY[:3])
    assert visible(index, **filters) == expected


def test_ties_go_to_the_later_snapshot_and_expired_snapshots_count_as_oldest() -> None:
    """Two items acquired at the same instant: the later commit is read first. An item whose adding snapshot was
    expired from the history is visible at every pinned snapshot."""
    history = [snap(1, "A"), snap(2, "B")]
    index = CollectionIndex(table(rows("A", JAN), rows("B", JAN, 1), rows("old", JAN, 2)), history)
    assert visible(index) == ["B", "A", "old"]
    assert visible(index, snapshot_id=1) == ["A", "old"]
    assert index.item("old").snapshot is None  # type: ignore[union-attr]


def test_levels_rows_and_dates(head: CollectionIndex) -> None:
    a = head.item_position("A")
    assert a is not None
    item = head.items[a]
    assert item.levels == (0, 1) and item.resolutions == (30.0, 60.0) and item.bbox == (-61.5, -0.07, -61.43, 0.0)
    start, stop = head.item_row_range(a, 1)
    assert stop - start == 1 and head.level[start] == 1
    assert head.chunk_rows(a, 0, (100.0, -100.0, 200.0, -50.0)).tolist() == [head.item_row_range(a, 0)[0]]
    assert head.chunk_rows(a, 0, (CHUNK + 1, -100.0, CHUNK + 2, -50.0)).tolist() == []  # a neighbour's chunk
    assert head.dates == ["2020-01-01", "2020-02-01"]


def test_empty_index() -> None:
    empty = CollectionIndex.empty()
    assert len(empty) == 0 and empty.snapshot_id is None
    assert visible(empty) == [] and empty.dates == []
