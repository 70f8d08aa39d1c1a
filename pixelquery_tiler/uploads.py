"""``POST /uploads``: a multipart file streamed into the warehouse's upload area (``uploads/{id}/{name}``).

Starlette's ``request.form()`` would first spool the whole part to a temporary file and only then let us
copy it, with no size cap while reading. Here the request body is fed chunk by chunk to python-multipart's
push parser and each piece of the ``file`` part goes straight to the warehouse filesystem, so memory holds
at most one network chunk plus a 1 MiB write buffer, and the size cap answers 413 as soon as it is crossed
(or at once from ``Content-Length``). The upload is written under ``NAME.partial`` and renamed when
complete, so ``upload://ID`` never names a half-written file; an aborted upload is deleted.
"""

from __future__ import annotations

import logging
import re
import uuid
from pathlib import PurePath

import anyio
from fastapi import HTTPException, Request
from python_multipart.multipart import MultipartParser, parse_options_header

from .jobs import UPLOAD_SCHEME, UPLOADS_DIR
from .warehouse import Warehouse

log = logging.getLogger(__name__)

FIELD = "file"
_WRITE_BATCH = 1 << 20


class _TooLarge(Exception):
    pass


def _safe_name(filename: str) -> str:
    """The client's file name (it carries product and date hints for ingest), reduced to a safe basename."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", PurePath(filename.replace("\\", "/")).name).lstrip(".")
    return name[:120] or "upload.tif"


async def receive_upload(request: Request, warehouse: Warehouse, max_bytes: int) -> dict:
    """Stream the ``file`` field of a multipart request into the upload area; the 201 body of the contract."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:  # + room for multipart headers
        raise HTTPException(413, f"upload larger than the server's limit of {max_bytes // (1 << 20)} MiB")
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise HTTPException(415, "POST /uploads takes multipart/form-data with a 'file' field")

    upload_id = uuid.uuid4().hex
    fs = warehouse.fs
    state: dict = {
        "headers": {},
        "field": None,
        "header": b"",
        "value": b"",
        "name": None,
        "out": None,
        "rel": None,
        "size": 0,
        "pending": [],
        "pending_bytes": 0,
        "done": False,
    }

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["header"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["header"].lower()] = state["value"]
        state["header"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["field"] = disp.get(b"name", b"").decode("utf-8", "replace")
        if state["field"] == FIELD and state["out"] is None and not state["done"]:
            state["name"] = _safe_name(disp.get(b"filename", b"upload.tif").decode("utf-8", "replace"))
            state["rel"] = f"{UPLOADS_DIR}/{upload_id}/{state['name']}"

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["field"] != FIELD or state["rel"] is None or state["done"]:
            return
        state["size"] += end - start
        if state["size"] > max_bytes:
            raise _TooLarge()
        state["pending"].append(bytes(data[start:end]))
        state["pending_bytes"] += end - start

    def on_part_end() -> None:
        if state["field"] == FIELD and state["rel"] is not None:
            state["done"] = True
        state["headers"], state["field"] = {}, None

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )

    async def flush(force: bool = False) -> None:
        if not state["pending"] or (not force and state["pending_bytes"] < _WRITE_BATCH):
            return
        if state["out"] is None:
            state["out"] = await anyio.to_thread.run_sync(fs.open_output, state["rel"] + ".partial")
        data = b"".join(state["pending"])
        state["pending"], state["pending_bytes"] = [], 0
        await anyio.to_thread.run_sync(state["out"].write, data)

    try:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                await flush()
            parser.finalize()
        except _TooLarge:
            raise HTTPException(413, f"upload larger than the server's limit of {max_bytes // (1 << 20)} MiB") from None
        except HTTPException:
            raise
        except Exception as exc:  # python-multipart's parse errors, or the client went away mid-body
            raise HTTPException(400, f"invalid multipart body: {exc}") from None
        if not state["done"]:
            raise HTTPException(400, f"multipart body has no complete '{FIELD}' field")
        await flush(force=True)
        if state["out"] is None:  # an empty file
            state["out"] = await anyio.to_thread.run_sync(fs.open_output, state["rel"] + ".partial")
        out, state["out"] = state["out"], None
        await anyio.to_thread.run_sync(out.close)
        await anyio.to_thread.run_sync(fs.fs.move, fs.full(state["rel"] + ".partial"), fs.full(state["rel"]))
    finally:
        if state["out"] is not None:  # aborted: close and remove what was written
            out = state["out"]
            await anyio.to_thread.run_sync(out.close)
            try:
                await anyio.to_thread.run_sync(fs.delete, state["rel"] + ".partial")
            except OSError:
                log.warning("could not remove aborted upload %s", state["rel"])
    log.info("upload %s: %s, %d bytes", upload_id, state["name"], state["size"])
    return {"source": f"{UPLOAD_SCHEME}{upload_id}", "size": state["size"]}
