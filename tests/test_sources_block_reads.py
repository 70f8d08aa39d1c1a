"""Source reads by whole block rows (``ingest._OpenGroup.read``): the rows handed out are exactly the file's.

Ingest asks for strips that follow the storage grid, not the source's tiles; the group reads to the end of a
block row and keeps the rest for the next strip. Checked here against plain rasterio window reads of the same
real file, for strips shorter than, longer than and straddling the source's block rows.
"""

from __future__ import annotations

import contextlib
import itertools
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from pixelquery_tiler.ingest import BandFile, BandGroup, _open_group
from pixelquery_tiler.profiles import BandSpec, get_profile


@pytest.mark.parametrize("block", [64, 256])
@pytest.mark.parametrize("strips", [[0, 40, 80, 200, 201, 700, 1515], [0, 195, 451, 707, 963, 1219, 1475, 1515]])
def test_strips_equal_the_file_whatever_the_block_rows(
    tmp_path: Path, shared_data: Path, block: int, strips: list[int]
) -> None:
    src_path = shared_data / "gw_LC08_224077_20200518_B2_30m.tif"  # 1515 rows
    path = tmp_path / "tiled.tif"
    with rasterio.open(src_path) as src:
        profile = dict(src.profile, tiled=True, blockxsize=block, blockysize=block, compress="deflate", nodata=0)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read())
    group = BandGroup((BandFile(str(path), (BandSpec("blue", "blue"),)),))
    with contextlib.ExitStack() as stack, rasterio.open(path) as ref:
        opened = _open_group(group, get_profile("generic-single"), stack)
        assert opened.block_rows == block
        for r0, r1 in itertools.pairwise(strips):
            data, valid = opened.read(r0, r1)
            expected = ref.read(1, window=Window(0, r0, ref.width, r1 - r0))
            assert data.shape == (1, r1 - r0, ref.width)
            assert np.array_equal(data[0], expected), (r0, r1)
            assert np.array_equal(valid[0], expected != 0), (r0, r1)
        # a non-sequential request (a re-read from the top) is served from the file, not the read-ahead
        data, _ = opened.read(0, 10)
        assert np.array_equal(data[0], ref.read(1, window=Window(0, 0, ref.width, 10)))
