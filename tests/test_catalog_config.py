"""Catalog and storage configuration without servers: ``--catalog-prop``, plain SQLite paths, URI query strings,
read-only commands that create nothing, and the one-line errors (CONTRACT "Catalog and storage configuration",
"Managing items and tables")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pixelquery_tiler import Warehouse
from pixelquery_tiler.fileio import WarehouseFS
from pixelquery_tiler.storage_config import StorageConfig, StorageConfigError, parse_props, split_uri
from testdata import DATA_DIR as DATA

REPO = Path(__file__).resolve().parents[1]
SMALL = DATA / "gw_LC08_224077_20200518_B2_60m.tif"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    for key in ("PIXELQUERY_CATALOG_URI", "PIXELQUERY_CATALOG_PROPS"):
        if key not in (env or {}):
            full_env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "pixelquery_tiler", *args], capture_output=True, text=True, env=full_env, timeout=120
    )


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixelquery-tiler: error:"), done.stderr
    return lines[0]


# -- properties and URIs --------------------------------------------------------------------------------------
def test_catalog_props_from_env_and_cli() -> None:
    env = {"PIXELQUERY_CATALOG_PROPS": "credential=a:b, warehouse=s3://t"}
    assert parse_props(["warehouse=s3://u", "token=x=y"], env=env) == {
        "credential": "a:b",
        "warehouse": "s3://u",
        "token": "x=y",  # the command line wins; '=' in values kept
    }
    with pytest.raises(StorageConfigError, match="KEY=VALUE"):
        parse_props(["novalue"], env={})


def test_one_storage_config_for_chunks_and_iceberg() -> None:
    """Catalog props beat the URI's query string, which beats the AWS environment; pyarrow and pyiceberg get the
    same endpoint, keys and region."""
    env = {"AWS_ENDPOINT_URL": "http://env:1", "AWS_ACCESS_KEY_ID": "envkey", "AWS_SECRET_ACCESS_KEY": "envsecret"}
    base, uri_props = split_uri("s3://bucket/wh?endpoint_override=query:2&scheme=http&region=eu-west-1")
    assert base == "s3://bucket/wh"
    config = StorageConfig.resolve(uri_props, {"s3.access-key-id": "propkey"}, env=env)
    assert (config.endpoint, config.region, config.access_key, config.secret_key) == (
        "http://query:2",
        "eu-west-1",
        "propkey",
        "envsecret",
    )
    props = config.iceberg_properties()
    assert props["s3.endpoint"] == "http://query:2" and props["s3.access-key-id"] == "propkey"
    # a custom endpoint without a region: a fixed one, so pyiceberg never asks AWS where the bucket lives
    assert StorageConfig.resolve(env=env).region == "us-east-1"
    with pytest.raises(StorageConfigError, match="unknown option"):
        split_uri("s3://bucket/wh?endpoint=x")


def test_query_string_stays_out_of_paths() -> None:
    fs = WarehouseFS("s3://bucket/wh?endpoint_override=127.0.0.1:9&scheme=http", props={})
    assert fs.uri == "s3://bucket/wh"
    assert fs.uri_of("chunks/a.arrow") == "s3://bucket/wh/chunks/a.arrow"
    assert fs.full("chunks/a.arrow") == "bucket/wh/chunks/a.arrow"
    assert fs.props["s3.endpoint"] == "http://127.0.0.1:9"


def test_missing_credentials_fail_before_any_write(tmp_path: Path) -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_EC2_METADATA_DISABLED": "true",
        "HOME": str(tmp_path),
    }
    done = run_cli(
        "ingest", "s3://bucket/wh", str(SMALL), "--collection", "c", "--catalog-uri", str(tmp_path / "cat.db"), env=env
    )
    assert "no S3 credentials" in one_line_error(done)
    assert not (tmp_path / "cat.db").exists()  # nothing written, not even the catalog


def test_unreachable_endpoint_fails_before_any_write(tmp_path: Path) -> None:
    from servers import free_port

    port = free_port()  # a loopback port nothing listens on
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    done = run_cli(
        "ingest", "s3://bucket/wh", str(SMALL), "--collection", "c", "--catalog-uri", str(tmp_path / "cat.db"), env=env
    )
    assert "cannot reach S3" in one_line_error(done)
    assert not (tmp_path / "cat.db").exists()


# -- plain SQLite paths ---------------------------------------------------------------------------------------
def test_plain_sqlite_path_as_catalog_uri(tmp_path: Path) -> None:
    catalog = tmp_path / "elsewhere" / "catalog.sqlite"
    catalog.parent.mkdir()
    done = run_cli("ingest", str(tmp_path / "wh"), str(SMALL), "--collection", "c", "--catalog-uri", str(catalog))
    assert done.returncode == 0, done.stderr
    assert catalog.exists() and not (tmp_path / "wh" / "catalog.db").exists()
    listed = run_cli("collections", str(tmp_path / "wh"), "--catalog-uri", str(catalog), "--json")
    assert '"c"' in listed.stdout, listed.stderr


# -- read-only commands create nothing (issue 14 item 4) -------------------------------------------------------
@pytest.mark.parametrize("command", [["collections"], ["snapshots", "--collection", "c"], ["gc", "--dry-run"]])
def test_read_only_commands_on_nothing_create_nothing(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nowhere"
    line = one_line_error(run_cli(command[0], str(missing), *command[1:]))
    assert "no warehouse" in line
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run_cli(command[0], str(empty), *command[1:]))
    assert list(empty.iterdir()) == []


def test_serve_on_an_empty_dir_creates_nothing(tmp_path: Path) -> None:
    line = one_line_error(run_cli("serve", str(tmp_path), "--port", "1"))
    assert "no warehouse" in line and "--create" in line
    assert list(tmp_path.iterdir()) == []


def test_serve_create_starts_on_a_new_warehouse(tmp_path: Path) -> None:
    from servers import http_get, serve

    with serve([tmp_path / "new", "--create"], tmp_path / "serve.log") as server:
        base = server.url
        status, body, _ = http_get(base + "/stac/collections")
        assert status == 200 and b'"collections":[]' in body.replace(b" ", b"")
    assert (tmp_path / "new" / "catalog.db").exists()


def test_sqlite_default_is_not_created_beside_another_catalogs_chunks(tmp_path: Path) -> None:
    """A warehouse ingested with another catalog (PostgreSQL here is stood in by a SQLite file elsewhere) holds chunk
    files but no catalog.db: forgetting --catalog-uri must not start a fresh empty catalog beside them."""
    wh = Warehouse(str(tmp_path / "wh"), catalog_uri=str(tmp_path / "other.db"))
    wh.ingest(str(SMALL), "c", datetime="2020-05-18")
    for args in (
        ["collections", str(tmp_path / "wh")],
        ["ingest", str(tmp_path / "wh"), str(SMALL), "--collection", "c"],
    ):
        line = one_line_error(run_cli(*args))
        assert "catalog" in line
    assert not (tmp_path / "wh" / "catalog.db").exists()


# -- missing PostgreSQL driver (issue 14 item 8) ---------------------------------------------------------------
def test_missing_psycopg2_names_the_extra(tmp_path: Path) -> None:
    """psycopg2 made unimportable (a module on PYTHONPATH that raises as a missing one does)."""
    (tmp_path / "psycopg2.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg2'\", name='psycopg2')\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    done = run_cli(
        "collections", str(tmp_path / "wh"), "--catalog-uri", "postgresql+psycopg2://u@localhost/db", env=env
    )
    line = one_line_error(done)
    assert "pip install 'pixelquery-tiler[postgres]'" in line
