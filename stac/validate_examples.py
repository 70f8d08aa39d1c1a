#!/usr/bin/env python3
"""Validate the pixelquery STAC extension examples offline (no network).

Usage:  python stac/validate_examples.py        (exit status 0 = all checks passed)

What it checks:
  1. the extension's schema (shipped in the package,
     pixelquery_tiler/stac_api/schemas/pixelquery/v1.0.0/schema.json, and served by every server at
     /stac/extensions/pixelquery/v1.0.0/schema.json) is a valid draft-07 schema, and examples/item.json and
     examples/collection.json validate against it with the `jsonschema` package alone;
  2. the same examples pass pystac's `validate()` (STAC 1.1.0 core + every schema in `stac_extensions`:
     ours, projection v2.0.0, eo v2.0.0, web-map-links v1.2.0), all served offline;
  3. deliberately broken copies (string snapshot id, unknown `pixelquery:foo`, ..., and a `wmts` link
     without `wmts:layer` to prove the official extension schemas are really applied) are rejected by both.

HOW OFFLINE VALIDATION OF OUR SCHEMA WORKS (do the same in any test that calls `item.validate()`):
  a. Activate the shared schema shim (shared/tools/offline-stac-schemas, beside the repo) before anything
     is validated: either run Python with PYTHONPATH=<that folder> (its sitecustomize.py imports
     offline_schemas), or `sys.path.insert(0, <that folder>); import offline_schemas` in-process, as
     `enable_offline_validation()` below does. It patches urllib3/urllib.request so the STAC 1.1.0 core,
     GeoJSON, PROJJSON and the official extension schemas (projection, eo, web-map-links, raster, file,
     view) are answered from local files.
     Set STAC_SCHEMA_STRICT=1 (done below with setdefault): otherwise an extension schema the shim has
     no copy of silently becomes a permissive {} and validation "passes" without checking anything.
     Do NOT point STAC_SCHEMA_DIR at our folder: the shim reads a single folder (at import time), so that
     would hide the official extension schemas; and our $id host (the server) is not one the shim handles:
     it lets that GET go to the server. For these examples no server runs, hence step b.
  b. Register our schema in pystac's validator cache under its $id:
         import pystac.validation
         v = pystac.validation.RegisteredValidator.get_validator()   # a JsonSchemaSTACValidator
         v.schema_cache[SCHEMA_ID] = json.load(open(SCHEMA_PATH))
     JsonSchemaSTACValidator._get_schema() looks in schema_cache before fetching, and its `registry`
     also serves every cached schema to $ref resolution. If code later installs a new validator with
     pystac.validation.set_validator(), register the schema in that one too
     (`enable_offline_validation(validator)`).
  c. Not schema-related, but it bites offline: `item.validate()` calls `item.to_dict()`, which resolves the
     item's `root` link (to rewrite hierarchical hrefs). For an Item/Collection read with from_dict() whose
     root link is an absolute http(s) URL (like the examples) that is a GET of the root catalog, which fails
     offline. Drop the root link first (`obj.remove_links("root")`, as below; an in-memory root set with
     set_root() does not help, its link then has no href and fails core validation), or validate the
     dict with `pystac.validation.validate_dict(d)`. Objects built in memory without links are fine.
  `jsonschema` must be installed (pystac[validation]); pystac's validate() refuses to run without it.

From a test:  sys.path.insert(0, "<repo>/stac"); from validate_examples import enable_offline_validation
"""

from __future__ import annotations

import copy
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_PATH = HERE.parent / "pixelquery_tiler" / "stac_api" / "schemas" / "pixelquery" / "v1.0.0" / "schema.json"
#: the examples show what `pixelquery-tiler serve` on its default address publishes; a running server names
#: (and serves) the schema under its own root, so validating a live server needs no registration at all
SCHEMA_ID = "http://127.0.0.1:8000/stac/extensions/pixelquery/v1.0.0/schema.json"
EXAMPLES = {"item": HERE / "examples" / "item.json", "collection": HERE / "examples" / "collection.json"}
# shared/ lives beside the repository (locally /work/shared, in CI beside the fresh clone).
DEFAULT_SHIM_DIR = HERE.parent.parent / "shared" / "tools" / "offline-stac-schemas"


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        schema = json.load(f)
    if schema.get("$id") != SCHEMA_ID:
        raise SystemExit(f"{SCHEMA_PATH}: $id is {schema.get('$id')!r}, expected {SCHEMA_ID!r}")
    return schema


def enable_offline_validation(validator: Any = None, shim_dir: str | os.PathLike[str] | None = None) -> Any:
    """Make pystac validation work offline and know our extension schema. Returns the validator used."""
    os.environ.setdefault("STAC_SCHEMA_STRICT", "1")
    if "offline_schemas" not in sys.modules:
        shim = Path(shim_dir or os.environ.get("PIXELQUERY_STAC_SHIM_DIR") or DEFAULT_SHIM_DIR)
        if not (shim / "offline_schemas.py").is_file():
            raise RuntimeError(f"offline STAC schema shim not found in {shim} (set PIXELQUERY_STAC_SHIM_DIR)")
        sys.path.insert(0, str(shim))
        import offline_schemas  # noqa: F401  (patches urllib3 / urllib.request on import)

    import pystac.validation

    if validator is None:
        validator = pystac.validation.RegisteredValidator.get_validator()
    validator.schema_cache[SCHEMA_ID] = load_schema()
    return validator


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --- deliberately broken documents: each must be rejected --------------------------------------------


def _set(where: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        (d["properties"] if where == "properties" else d)[key] = value

    return mutate


def _delete(where: str, key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        del (d["properties"] if where == "properties" else d)[key]

    return mutate


def _summary(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        d["summaries"][key] = value

    return mutate


def _asset_field(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(d: dict[str, Any]) -> None:
        d["assets"]["thumbnail"][key] = value

    return mutate


def _wmts_without_layer(d: dict[str, Any]) -> None:
    for link in d["links"]:
        if link["rel"] == "wmts":
            del link["wmts:layer"]


def _bad_common_name(d: dict[str, Any]) -> None:
    d["assets"]["source"]["bands"][0]["eo:common_name"] = "ultra-blue"


def _bad_proj_code(d: dict[str, Any]) -> None:
    d["properties"]["proj:code"] = 32621  # must be a string


def _empty_table(d: dict[str, Any]) -> None:
    d["pixelquery:current_snapshot_id"] = None
    d["pixelquery:snapshot_count"] = 0


def _summaries_only(d: dict[str, Any]) -> None:
    for key in ("pixelquery:table", "pixelquery:current_snapshot_id", "pixelquery:snapshot_count"):
        del d[key]


def _no_pixelquery_fields(d: dict[str, Any]) -> None:
    _summaries_only(d)
    del d["summaries"]["pixelquery:product"], d["summaries"]["pixelquery:grid"]


# (name, example, mutation, schema expected to reject it). The last ones break official extensions only,
# so only pystac (which also applies projection/eo/web-map-links) can reject them.
WML = "https://stac-extensions.github.io/web-map-links/v1.2.0/schema.json"
EO = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
PROJ = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
BROKEN: list[tuple[str, str, Callable[[dict[str, Any]], None], str]] = [
    (
        "item: pixelquery:snapshot_id as string",
        "item",
        _set("properties", "pixelquery:snapshot_id", "6437419547234234123"),
        SCHEMA_ID,
    ),
    (
        "item: pixelquery:snapshot_id with a fraction",
        "item",
        _set("properties", "pixelquery:snapshot_id", 1.5),
        SCHEMA_ID,
    ),
    ("item: pixelquery:snapshot_id missing", "item", _delete("properties", "pixelquery:snapshot_id"), SCHEMA_ID),
    ("item: pixelquery:snapshot_id > 2^63-1", "item", _set("properties", "pixelquery:snapshot_id", 2**63), SCHEMA_ID),
    ("item: unknown pixelquery:foo", "item", _set("properties", "pixelquery:foo", 1), SCHEMA_ID),
    (
        "item: collection field pixelquery:table",
        "item",
        _set("properties", "pixelquery:table", "pixelquery.landsat"),
        SCHEMA_ID,
    ),
    (
        "item: pixelquery:parent_snapshot_id as string",
        "item",
        _set("properties", "pixelquery:parent_snapshot_id", "3051729675574597004"),
        SCHEMA_ID,
    ),
    ("item: pixelquery:levels = 0", "item", _set("properties", "pixelquery:levels", 0), SCHEMA_ID),
    ("item: pixelquery:chunk_count < 0", "item", _set("properties", "pixelquery:chunk_count", -1), SCHEMA_ID),
    ("item: pixelquery:product as number", "item", _set("properties", "pixelquery:product", 8), SCHEMA_ID),
    ("item: pixelquery:grid empty", "item", _set("properties", "pixelquery:grid", ""), SCHEMA_ID),
    ("item: pixelquery:source as list", "item", _set("properties", "pixelquery:source", ["a.tif"]), SCHEMA_ID),
    ("item: unknown pixelquery:foo in asset", "item", _asset_field("pixelquery:foo", "x"), SCHEMA_ID),
    ("collection: unknown pixelquery:foo", "collection", _set("top", "pixelquery:foo", 1), SCHEMA_ID),
    (
        "collection: item field pixelquery:snapshot_id at top level",
        "collection",
        _set("top", "pixelquery:snapshot_id", 1),
        SCHEMA_ID,
    ),
    (
        "collection: pixelquery:current_snapshot_id as string",
        "collection",
        _set("top", "pixelquery:current_snapshot_id", "6437419547234234123"),
        SCHEMA_ID,
    ),
    (
        "collection: pixelquery:snapshot_count < 0",
        "collection",
        _set("top", "pixelquery:snapshot_count", -3),
        SCHEMA_ID,
    ),
    ("collection: pixelquery:table as number", "collection", _set("top", "pixelquery:table", 1), SCHEMA_ID),
    (
        "collection: summary pixelquery:product not strings",
        "collection",
        _summary("pixelquery:product", [8]),
        SCHEMA_ID,
    ),
    ("collection: summary of unlisted pixelquery:levels", "collection", _summary("pixelquery:levels", [4]), SCHEMA_ID),
    ("collection: lists the extension but uses no pixelquery: field", "collection", _no_pixelquery_fields, SCHEMA_ID),
    ("item: wmts link without wmts:layer (web-map-links)", "item", _wmts_without_layer, WML),
    ("item: unknown eo:common_name (eo)", "item", _bad_common_name, EO),
    ("item: proj:code as number (projection)", "item", _bad_proj_code, PROJ),
]


# Variants that must stay valid (edge cases of the field definitions).
VALID: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    (
        "item: first snapshot (pixelquery:parent_snapshot_id null)",
        "item",
        _set("properties", "pixelquery:parent_snapshot_id", None),
    ),
    ("item: largest snapshot id 2^63-1", "item", _set("properties", "pixelquery:snapshot_id", 2**63 - 1)),
    ("item: pixelquery:source on an asset", "item", _asset_field("pixelquery:source", "thumb.png")),
    ("collection: empty table (current snapshot null, count 0)", "collection", _empty_table),
    ("collection: pixelquery fields in summaries only", "collection", _summaries_only),
]


def main() -> int:
    import jsonschema

    failures: list[str] = []
    passed = 0

    def check(ok: bool, label: str, detail: str = "") -> None:
        nonlocal passed
        print(f"{'ok  ' if ok else 'FAIL'} {label}{(': ' + detail) if detail and not ok else ''}")
        if ok:
            passed += 1
        else:
            failures.append(label)

    schema = load_schema()
    try:
        jsonschema.Draft7Validator.check_schema(schema)
        check(True, "schema.json is a valid draft-07 JSON Schema")
    except jsonschema.SchemaError as e:
        check(False, "schema.json is a valid draft-07 JSON Schema", e.message)
    ours = jsonschema.Draft7Validator(schema)

    enable_offline_validation()
    import pystac
    import pystac.validation
    from pystac.errors import STACValidationError

    def pystac_validate(kind: str, d: dict[str, Any]) -> list[str]:
        # Raw dict first (exactly the file), then through the pystac object model (item.validate()).
        used = pystac.validation.validate_dict(copy.deepcopy(d))
        obj = (pystac.Item if kind == "item" else pystac.Collection).from_dict(copy.deepcopy(d))
        # Not schema-related: to_dict() (called by validate()) resolves the `root` link to rewrite
        # hierarchical hrefs, i.e. it would GET https://tiler.example.com/stac. Drop that link first.
        obj.remove_links(pystac.RelType.ROOT)
        obj.validate()
        return used

    examples = {kind: read_json(path) for kind, path in EXAMPLES.items()}
    for kind, d in examples.items():
        best = jsonschema.exceptions.best_match(ours.iter_errors(d))
        check(
            best is None,
            f"{kind}.json valid against our schema (jsonschema)",
            best and f"at /{'/'.join(map(str, best.absolute_path))}: {best.message[:300]}",
        )
        try:
            used = pystac_validate(kind, d)
            missing = [u for u in d.get("stac_extensions", []) if u not in used]
            check(
                not missing and SCHEMA_ID in used,
                f"{kind}.json valid with pystac validate() (core + {len(used) - 1} extension schemas)",
                f"not validated against: {missing}",
            )
        except STACValidationError as e:
            check(False, f"{kind}.json valid with pystac validate()", " | ".join(str(e).splitlines()[:2]))
        except Exception as e:  # schema fetch errors etc.
            check(False, f"{kind}.json valid with pystac validate()", f"{type(e).__name__}: {e}")

    for label, kind, mutate in VALID:
        d = copy.deepcopy(examples[kind])
        mutate(d)
        best = jsonschema.exceptions.best_match(ours.iter_errors(d))
        check(best is None, f"accepted by our schema (jsonschema): {label}", best and best.message[:300])
        try:
            pystac_validate(kind, d)
            check(True, f"accepted by pystac validate(): {label}")
        except Exception as e:
            check(False, f"accepted by pystac validate(): {label}", " | ".join(str(e).splitlines()[:2]))

    for label, kind, mutate, rejecting_schema in BROKEN:
        d = copy.deepcopy(examples[kind])
        mutate(d)
        if rejecting_schema == SCHEMA_ID:
            check(not ours.is_valid(d), f"rejected by our schema (jsonschema): {label}", "accepted")
        try:
            pystac_validate(kind, d)
            check(False, f"rejected by pystac validate(): {label}", "accepted")
        except STACValidationError as e:
            # pystac stops at the first failing schema: make sure it is the one the mutation targets.
            check(
                f"against schema at {rejecting_schema}" in str(e),
                f"rejected by pystac validate(): {label}",
                f"rejected by another schema: {str(e).splitlines()[0]}",
            )
        except Exception as e:
            check(False, f"rejected by pystac validate(): {label}", f"unexpected {type(e).__name__}: {e}")

    print(f"\n{passed} passed, {len(failures)} failed")
    if failures:
        print("failed checks:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
