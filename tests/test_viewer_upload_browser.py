"""The viewer's "Add imagery" panel in headless Chromium against a live ``serve --api-key``.

tests/browser/upload_check.mjs pastes the key, drops a real GeoTIFF on the drop zone and watches the job; the
new acquisition date must appear on the time slider without a page reload. Needs ``bash tests/browser/setup.sh``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "browser"))
import harness

pytestmark = pytest.mark.browser
KEY = "viewer-upload-key"


def test_upload_in_viewer_adds_a_date(tmp_path: Path) -> None:
    harness.require_browser()
    from pixelquery_tiler import Warehouse

    wh = tmp_path / "warehouse"
    Warehouse(str(wh)).ingest(
        str(harness.data_file("gw_LC08_224077_20200518_B2_60m.tif")), "landsat", datetime="2020-05-18T13:30:00Z"
    )
    command = [*harness.serve_command(wh, 0), "--api-key", KEY]
    command[command.index("--port") + 1] = "{port}"
    with harness.live_server(wh, tmp_path / "server.log", command=command) as base:
        result = harness.run_node(
            "upload_check.mjs",
            {
                "base": base,
                "key": KEY,
                "collection": "landsat",
                "datetime": "2021-03-04T10:00:00Z",
                "file": str(harness.data_file("gw_LC08_224077_20200518_B2_30m.tif")),
            },
        )
    assert result["problems"] == [], result["problems"]
    assert result["datesBefore"] == ["2020-05-18"]
    # the panel went through the job's states; "queued" may be skipped when the worker claims it at once
    statuses = result["statuses"]
    assert statuses[0] == "uploading" and statuses[-1] == "succeeded", statuses
    assert "running" in statuses or "queued" in statuses, statuses
    assert result["datesAfter"] == ["2020-05-18", "2021-03-04"]
    assert result["sliderMax"] == "1" and result["timeLabel"] == "2021-03-04"  # the slider shows the newest date
    assert result["storedKey"] == "set"
    log = (tmp_path / "server.log").read_text()
    assert KEY not in log
    harness.publish_docs(harness.ARTIFACTS / "viewer-upload.png", "viewer-upload")


def test_read_only_server_has_no_upload_panel(tmp_path: Path) -> None:
    from pixelquery_tiler import Warehouse

    wh = tmp_path / "warehouse"
    Warehouse(str(wh)).ingest(
        str(harness.data_file("gw_LC08_224077_20200518_B2_60m.tif")), "landsat", datetime="2020-05-18T13:30:00Z"
    )
    with harness.live_server(wh, tmp_path / "server.log") as base:
        import json

        status, body, _ = harness.http_get(base + "jobs?limit=1")
    assert status == 200 and json.loads(body)["writes"] is False
