"""The read path's shape: one ``View`` per request (items filtered once), what was read in the image metadata,
and band-wise mosaics (an observation lacking a band still gives its other bands)."""

from __future__ import annotations

from pathlib import Path

import morecantile
import numpy as np
import rasterio
from rasterio.crs import CRS
from rio_tiler.io import Reader

from conftest import TILE_DATA_DIR, TileWarehouse
from pixelquery_tiler import Warehouse
from pixelquery_tiler.index import CollectionIndex
from pixelquery_tiler.reader import PixelQueryReader
from pixelquery_tiler.view import View

WEB = morecantile.tms.get("WebMercatorQuad")
PAIR_30 = "gw_LC08_224077_20200518_B2_30m.tif"


def centre_tile(path: Path, z: int) -> morecantile.Tile:
    with Reader(str(path)) as src:
        w, s, e, n = src.get_geographic_bounds(CRS.from_epsg(4326))
    return WEB.tile((w + e) / 2, (s + n) / 2, z)


def test_item_filter_runs_once_per_tile_request(tile_client, monkeypatch):
    calls = []
    original = CollectionIndex.select_items

    def counting(self, *args, **kwargs):
        calls.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CollectionIndex, "select_items", counting)
    t = centre_tile(TILE_DATA_DIR / PAIR_30, 12)
    r = tile_client.get(f"/collections/pair/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?datetime=2020-05-18")
    assert r.status_code == 200 and r.headers["x-pixelquery-levels"]
    assert len(calls) == 1


def test_image_metadata_says_what_was_read(tile_warehouse: TileWarehouse):
    first, second = tile_warehouse.pair
    view = View.create(Warehouse(tile_warehouse.uri).collection("pair"))
    assert [view.index.items[p].item_id for p in view.positions] == [second.item_id, first.item_id]
    t = centre_tile(TILE_DATA_DIR / PAIR_30, 9)
    img = PixelQueryReader(view, pixel_selection="mean").tile(t.x, t.y, t.z)
    assert img.metadata["items"] == [second.item_id, first.item_id] == img.assets
    assert set(img.metadata["levels"]) == {first.item_id, second.item_id}
    assert img.metadata["datetimes"] == ["2020-06-03T00:00:00+00:00", "2020-05-18T00:00:00+00:00"]
    assert view.reads == [img.metadata]  # the view is the request's record of its reads


def test_observation_lacking_a_band_still_gives_its_other_bands(tile_warehouse: TileWarehouse, tmp_path: Path):
    """Older scene: red+green; newer scene: red only. ``red,green`` = newer red, older green (per band set)."""
    with rasterio.open(tile_warehouse.rgbn) as ds:
        profile, data = ds.profile | {"nodata": 0, "photometric": "MINISBLACK"}, ds.read([1, 2])
    data = np.where(data == 0, 1, data).astype(data.dtype)
    older, newer = tmp_path / "older.tif", tmp_path / "newer.tif"
    with rasterio.open(older, "w", **(profile | {"count": 2})) as out:
        out.write(data)
    with rasterio.open(newer, "w", **(profile | {"count": 1})) as out:
        out.write(np.where(data[:1] < 250, data[:1] + 5, data[:1]).astype(data.dtype))
    wh = Warehouse(tile_warehouse.uri)
    wh.ingest(str(older), "bandsets", datetime="2001-01-01", bands=["red", "green"])
    wh.ingest(str(newer), "bandsets", datetime="2002-01-01", bands=["red"])
    t = centre_tile(older, 13)
    with Reader(str(older)) as o_src, Reader(str(newer)) as n_src:
        ref_old, ref_new = o_src.tile(t.x, t.y, t.z).array, n_src.tile(t.x, t.y, t.z).array
    img = PixelQueryReader(wh.collection("bandsets"), bands="red,green").tile(t.x, t.y, t.z)
    assert img.band_names == ["red", "green"] and len(img.metadata["items"]) == 2
    valid = ~np.ma.getmaskarray(img.array[0]) & ~np.ma.getmaskarray(ref_new[0])
    assert valid.mean() > 0.5
    assert (img.array.data[0][valid] == ref_new.data[0][valid]).mean() >= 0.99  # red: the newer scene
    assert (img.array.data[1][valid] == ref_old.data[1][valid]).mean() >= 0.99  # green: the older one


def test_zoom_ranges_are_remembered_on_the_index(tile_warehouse: TileWarehouse, monkeypatch):
    """Every view of one index shares its zoom ranges (capabilities ask for every TMS); a new index starts afresh."""
    calls = []
    original = View._compute_zoom_range

    def counting(self, tms):
        calls.append(tms.id)
        return original(self, tms)

    monkeypatch.setattr(View, "_compute_zoom_range", counting)
    collection = Warehouse(tile_warehouse.uri).collection("pair")
    index = collection.index()
    first = View.create(collection, index=index).zoom_range(WEB)
    assert View.create(collection, index=index).zoom_range(WEB) == first and calls == ["WebMercatorQuad"]
    View.create(collection, index=index, datetime="2020-05-18").zoom_range(WEB)  # other choices: its own range
    assert len(calls) == 2
    fresh = Warehouse(tile_warehouse.uri).collection("pair")  # another index object of the same table
    assert fresh.index() is not index
    assert View.create(fresh).zoom_range(WEB) == first and len(calls) == 3


def test_views_route_class_reports_every_read(tile_client):
    """The route class receives the request's View as an argument: point reads report their levels too, and the
    wrapping adds no parameter of its own to the published API."""
    r = tile_client.get("/collections/pair/point/-54.8,-25.2")
    assert r.status_code == 200 and r.headers["x-pixelquery-levels"] and r.headers["etag"]
    params = {
        p["name"]
        for path in tile_client.get("/api").json()["paths"].values()
        for op in path.values()
        for p in op.get("parameters", [])
    }
    assert not any(name.startswith("_view") for name in params)
