"""The job queue without HTTP: claims, leases, fencing and the no-duplicate retry, on a real SQLite catalog."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from pixelquery_tiler import Warehouse
from pixelquery_tiler.jobs import JobStore, JobWorker, LeaseLost, WorkerOptions
from servers import free_port
from testdata import DATA_DIR as DATA

L8_60 = "gw_LC08_224077_20200518_B2_60m.tif"


@pytest.fixture
def setup(tmp_path: Path):
    src = tmp_path / L8_60
    shutil.copy(DATA / L8_60, src)
    wh = Warehouse(str(tmp_path / "wh"), refresh_interval=0)
    return wh, JobStore.for_warehouse(wh), src


def test_claims_are_exclusive_and_fenced(setup) -> None:
    _wh, store, src = setup
    job = store.submit({"collection": "l8", "sources": [str(src)]})
    a = store.claim("worker-a", lease=30)
    assert a is not None and a.id == job.id and a.attempts == 1 and a.status == "running"
    assert store.claim("worker-b", lease=30) is None  # leased: nobody else gets it
    # the lease expires: another worker takes it over, and the first one's writes are refused from then on
    store._fenced(a, lease_until=time.time() - 1)
    b = store.claim("worker-b", lease=30)
    assert b is not None and b.attempts == 2 and b.worker == "worker-b"
    with pytest.raises(LeaseLost):
        store.succeed(a, ["x"])
    store.succeed(b, ["y"])
    assert store.get(job.id).status == "succeeded" and store.get(job.id).items == ["y"]
    assert store.counts() == {"queued": 0, "running": 0, "succeeded": 1, "failed": 0}


def test_retry_after_a_crash_between_commit_and_bookkeeping_adds_no_duplicate(setup) -> None:
    wh, store, src = setup
    job = store.submit({"collection": "l8", "sources": [str(src)], "datetime": "2020-05-18T13:30:00Z"})
    first = store.claim("dead-worker", lease=30)
    # the dead worker got as far as the catalog commit, then died before recording the item on the job
    committed = wh.ingest(str(src), "l8", datetime="2020-05-18T13:30:00Z")
    store._fenced(first, lease_until=time.time() - 1)

    worker = JobWorker(wh, store, WorkerOptions(lease=30))
    assert worker.run_once()
    done = store.get(job.id)
    assert done.status == "succeeded" and done.attempts == 2
    assert done.items == [committed.item_id]  # found, not ingested again
    assert [s.item_id for s in wh.collection("l8").snapshots()] == [committed.item_id]


def test_transient_errors_back_off_then_fail_after_the_last_attempt(setup) -> None:
    wh, store, _ = setup
    # a loopback port nobody listens on: connection refused, a network error
    url = f"http://127.0.0.1:{free_port()}/scene.tif"
    job = store.submit({"collection": "l8", "sources": [url]}, max_attempts=2)
    worker = JobWorker(wh, store, WorkerOptions(lease=30, backoff=0.5))
    assert worker.run_once()
    queued = store.get(job.id)
    assert queued.status == "queued" and "connect" in queued.error and queued.run_after > time.time()
    assert not worker.run_once()  # backing off: not claimable yet
    time.sleep(0.6)
    assert worker.run_once()
    failed = store.get(job.id)
    # (GDAL caches the failed URL, so the second attempt may word the error differently)
    assert failed.status == "failed" and failed.attempts == 2 and "cannot read raster" in failed.error
    assert wh.collections() == []


def test_bad_input_fails_at_once(setup, tmp_path: Path) -> None:
    wh, store, _ = setup
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    job = store.submit({"collection": "l8", "sources": [str(text)]})
    assert JobWorker(wh, store).run_once()
    failed = store.get(job.id)
    assert failed.status == "failed" and failed.attempts == 1 and "cannot read raster" in failed.error
