"""Start-up cost is structural: light commands must not import the heavy stacks they do not use.

Which modules a command imports is checked in a fresh interpreter (``sys.modules``), never how long it
takes: timings belong in ``benchmarks/``. pyiceberg, pyarrow, rasterio and titiler cost ~1-2 s of imports
together; ``--help``, the package import and listing the collections of a local warehouse need none of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from warehouse_fixtures import ingest_json, write_geotiff

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("pyiceberg", "pyarrow", "rasterio", "rio_tiler", "titiler", "fastapi", "sqlalchemy", "pandas")

#: runs ``code`` then prints the heavy top-level packages that ended up imported
PROBE = """
import sys
{code}
heavy = set({heavy!r})
print(__import__("json").dumps(sorted({{m.split(".")[0] for m in sys.modules}} & heavy)))
"""


def imported_heavy(code: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code, heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_package_and_cli_import_nothing_heavy() -> None:
    assert imported_heavy("import pixelquery_tiler, pixelquery_tiler.cli") == []


def test_help_imports_nothing_heavy() -> None:
    code = "from pixelquery_tiler.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass"
    assert imported_heavy(code) == []


def test_lazy_package_names_still_resolve() -> None:
    """``from pixelquery_tiler import Warehouse`` (the public API) keeps working after the lazy import."""
    from pixelquery_tiler import Collection, CollectionNotFound, Warehouse, warehouse

    assert (Warehouse, Collection, CollectionNotFound) == (
        warehouse.Warehouse,
        warehouse.Collection,
        warehouse.CollectionNotFound,
    )
    with pytest.raises(ImportError):
        from pixelquery_tiler import no_such_name  # noqa: F401


def test_listing_collections_skips_the_read_and_ingest_stacks(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    ingest_json(wh, [write_geotiff(tmp_path / "a.tif", seed=1, datetime_tag="2021:05:01 10:00:00")], "c")
    code = (
        "import contextlib, io\nfrom pixelquery_tiler.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()) as out:\n    rc = main(['collections', {str(wh)!r}])\n"
        "assert rc == 0 and out.getvalue().startswith('c\\t'), out.getvalue()"
    )
    # the embedded SQLite catalog is read with the stdlib (catalog_listing.py); no item log here, so no pyarrow
    assert imported_heavy(code) == []
