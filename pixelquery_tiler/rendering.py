"""Default rendering of a collection view: the tile query parameters that make a useful picture.

A tile URL without rendering parameters returns the stored data as is: 16-bit reflectance renders almost
black and a 6-band view cannot be encoded as PNG at all (400). Every document that hands tile URLs to a
client that cannot choose a rendering itself (STAC web-map links and thumbnails, WMTS capabilities, TileJSON)
therefore carries the defaults computed here, so they all agree: the product profile's ``rendering`` of the
view's newest item, restricted to the bands that item has.

Tile endpoints themselves keep returning raw data when asked without parameters (GeoTIFF/NPY clients want
the values), and a request that names any rendering parameter gets no defaults mixed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from .index import CollectionIndex
from .profiles import load_profiles

#: query parameters (titiler's, plus ours) that choose how pixels are rendered; any of them in a request means
#: the client chose a rendering. ``algorithm`` and ``unscale`` change the band count/value range the defaults
#: were made for, so they count as a choice too.
RENDERING_PARAMS = frozenset(
    {
        "bidx",
        "bands",
        "expression",
        "rescale",
        "colormap_name",
        "colormap",
        "color_formula",
        "algorithm",
        "algorithm_params",
        "unscale",
    }
)


def has_rendering_params(keys: Iterable[str]) -> bool:
    """Whether query parameter names include a rendering choice (names are case-sensitive, as in titiler)."""
    return any(key in RENDERING_PARAMS for key in keys)


def newest_position(index: CollectionIndex, positions: Sequence[int] | np.ndarray | None = None) -> int | None:
    """The newest acquisition among ``positions`` (default: every item); ties go to the later snapshot.

    The same order the mosaic uses for ``first``, so the defaults fit the observation a client sees on top.
    """
    pos = np.arange(len(index.items)) if positions is None else np.asarray(positions, dtype=np.int64)
    if pos.size == 0:
        return None
    return int(pos[np.lexsort((index.item_snap_pos[pos], index.item_time[pos]))[-1]])


def item_rendering(index: CollectionIndex, pos: int) -> dict[str, str]:
    """Tile query parameters (``bands``, ``rescale``) that render item ``pos`` of ``index`` usefully.

    Bands: the profile's rendering bands the item has, when that gives a gray (1) or RGB (3) picture, else the
    item's first three bands (or its first band). Rescale: the profile's; without one, 8-bit data needs none
    and other data is stretched over the native level's min/max statistics.
    """
    item = index.items[pos]
    profile = load_profiles().get(item.product)
    rendering = profile.rendering if profile is not None else {}
    scene = item.scene_bands or item.bands  # every band of the item, over all its band groups
    bands = [b for b in rendering.get("bands", []) if b in scene]
    if len(bands) not in (1, 3):
        bands = list(scene[:3]) if len(scene) >= 3 else list(scene[:1])
    params = {"bands": ",".join(bands)}
    if rescale := rendering.get("rescale"):
        params["rescale"] = f"{_num(rescale[0][0])},{_num(rescale[0][1])}"
    elif item.dtype != "uint8" and (
        stats := _stats_range(index, pos, [item.bands.index(b) for b in bands if b in item.bands])
    ):
        params["rescale"] = f"{_num(stats[0])},{_num(stats[1])}"
    return params


def default_rendering(index: CollectionIndex, positions: Sequence[int] | np.ndarray | None = None) -> dict[str, str]:
    """Rendering defaults of a view: ``item_rendering`` of its newest item (``{}`` for an empty view).

    ``positions``: the view's items (a reader's ``positions``); default: the whole collection.
    """
    pos = newest_position(index, positions)
    return {} if pos is None else item_rendering(index, pos)


def _stats_range(index: CollectionIndex, pos: int, band_idx: list[int]) -> tuple[float, float] | None:
    """(min, max) over the given bands of the item's native-level chunks, from the catalog's statistics."""
    start, stop = index.item_row_range(pos, index.items[pos].levels[0])
    rows = index.rows.slice(start, stop - start)
    # every chunk row has per-band statistics (ingest writes them); a band's own value may be null
    lows = [v[b] for v in rows.column("band_min").to_pylist() if v is not None for b in band_idx]
    highs = [v[b] for v in rows.column("band_max").to_pylist() if v is not None for b in band_idx]
    lows = [v for v in lows if v is not None and math.isfinite(v)]
    highs = [v for v in highs if v is not None and math.isfinite(v)]
    if not lows or not highs or min(lows) >= max(highs):
        return None
    return min(lows), max(highs)


def _num(value: float) -> str:
    """``7000`` rather than ``7000.0`` in URLs; non-integers keep full precision."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
