"""schemathesis over the STAC API routes of the app (in process, ASGI): no input may produce a 5xx.

Property-based: schemathesis generates requests from the app's own OpenAPI document (``/api``) for every
``/stac`` operation, both valid (positive) and schema-violating (negative) ones. Examples are bounded
(``MAX_EXAMPLES`` per operation and mode, derandomized so a run is reproducible) to keep the test short in CI;
the checks are "not a server error" and error bodies that stay bounded. Tile routes have their own tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation import GenerationMode  # noqa: E402

from schemathesis_checks import server_faults  # noqa: E402

MAX_EXAMPLES = 30
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


@pytest.fixture(scope="module")
def stac_api_schema(stac_warehouse: tuple[Path, dict]) -> Any:
    from pixelquery_tiler import create_app

    root, _ = stac_warehouse
    app = create_app(str(root), refresh_interval=60)
    return schemathesis.openapi.from_asgi("/api", app).include(path_regex=r"^/stac")


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_no_stac_input_is_a_server_error(stac_api_schema: Any, mode: GenerationMode) -> None:
    operations = _operations(stac_api_schema)
    assert len(operations) >= 10  # every STAC route is in the document
    failures = server_faults(operations, mode, MAX_EXAMPLES)
    assert not failures, "\n".join(failures[:20])
