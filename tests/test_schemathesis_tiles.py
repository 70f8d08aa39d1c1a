"""schemathesis over the tile, WMTS, time-series and job routes of the app (in process): no input is a 5xx.

The STAC routes have their own run (``test_schemathesis_stac.py``). Here every non-STAC operation of the app's
OpenAPI document (``/api``) gets bounded, derandomized valid and schema-violating examples. Path parameters that
name a collection are pointed at the real ``pair`` collection (Landsat 30 m + 60 m) in half of the examples, so
the requests reach the read path instead of stopping at "no such collection". Item routes repeat the collection
routes with one more path segment and are left to the hand-written tests, to keep the run short.
"""

from __future__ import annotations

from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation import GenerationMode  # noqa: E402

from conftest import TileWarehouse  # noqa: E402
from schemathesis_checks import server_faults  # noqa: E402

MAX_EXAMPLES = 8
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.fixture(scope="module")
def app_schema(tile_warehouse: TileWarehouse) -> Any:
    from pixelquery_tiler import create_app

    app = create_app(tile_warehouse.uri, refresh_interval=60)
    return (
        schemathesis.openapi.from_asgi("/api", app).exclude(path_regex=r"^/stac").exclude(path_regex=r"/items/\{iid\}")
    )


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_no_tile_input_is_a_server_error(app_schema: Any, mode: GenerationMode) -> None:
    operations = [result.ok() for result in app_schema.get_all_operations()]
    assert len(operations) >= 20  # tiles, tilejson, WMTS, info, point, preview, bbox, feature, statistics, ...
    failures = server_faults(operations, mode, MAX_EXAMPLES, point_at=("cid", "pair"))
    assert not failures, "\n".join(failures[:20])
