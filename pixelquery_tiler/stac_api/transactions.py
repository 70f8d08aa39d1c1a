"""STAC Transactions on items: ``POST /stac/collections/{cid}/items`` (an ingest job) and ``DELETE .../{iid}``.

Only these two operations exist (an item is a snapshot: it cannot be replaced or patched in place), so only
the items transaction class is advertised and PUT/PATCH answer 405. A POSTed item is not stored as given: its
raster assets are ingested by a job (``202`` + ``Location: /jobs/{id}``) and the item the API then serves is
derived from the pixels, like every other item. A DELETE commits a new snapshot without the item; earlier
snapshots keep it for time travel.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fastapi import Body, FastAPI, HTTPException, Response
from fastapi.params import Depends
from stac_fastapi.extensions.transaction.transaction import (
    TransactionConformanceClasses,
)

from ..catalog import ItemNotInCollection
from ..jobs import SourceError
from ..warehouse import CollectionNotFound
from . import PREFIX

if TYPE_CHECKING:
    from ..service import JobsService

log = logging.getLogger(__name__)

CONFORMANCE = [TransactionConformanceClasses.ITEMS.value]


class _Advertised:
    """Stands in the STAC client's extension list so ``/conformance`` and the landing page list the class."""

    conformance_classes = CONFORMANCE


def add_transactions(app: FastAPI, service: JobsService, require_write: Depends) -> None:
    """Register the item transaction routes (same auth as ``/jobs``) and advertise their conformance class."""
    warehouse = service.warehouse

    @app.post(
        f"{PREFIX}/collections/{{collection_id}}/items",
        status_code=202,
        dependencies=[require_write],
        tags=["Transaction Extension"],
    )
    def create_item(collection_id: str, item: dict[str, Any] = Body(...)) -> Response:
        """Ingest the rasters a STAC Item's assets point at, as a job."""
        try:
            warehouse.collection(collection_id)
        except CollectionNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        if item.get("type") != "Feature" or not isinstance(item.get("assets"), dict):
            raise HTTPException(400, "the body must be a STAC Item (GeoJSON Feature with assets)")
        if item.get("collection") not in (None, collection_id):
            raise HTTPException(400, f"item collection {item.get('collection')!r} does not match {collection_id!r}")
        from ..service import JobRequest, validate_job

        try:
            # a POSTed item is a new item by its id, even if its assets were ingested before under another id
            request = JobRequest(collection=collection_id, sources=[item], allow_duplicate=True)
        except ValueError as exc:
            raise HTTPException(400, str(exc).splitlines()[0]) from None
        try:
            body = validate_job(request, warehouse, service.settings)
        except SourceError as exc:
            raise HTTPException(400, str(exc)) from None
        return service.submit(body)

    @app.delete(
        f"{PREFIX}/collections/{{collection_id}}/items/{{item_id}}",
        status_code=200,
        dependencies=[require_write],
        tags=["Transaction Extension"],
    )
    def delete_item(collection_id: str, item_id: str) -> dict:
        """Remove the item from the collection's head in a new snapshot."""
        try:
            handle = warehouse.collection(collection_id)
        except CollectionNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        try:
            snap = handle.delete(item_id)
        except ItemNotInCollection:
            raise HTTPException(404, f"item {item_id!r} not found in collection {collection_id!r}") from None
        log.info("deleted item %s from %s in snapshot %s", item_id, collection_id, snap.snapshot_id)
        return {"deleted": item_id, "collection": collection_id, "snapshot_id": snap.snapshot_id}

    api = getattr(app.state, "stac_api", None)
    if api is not None:
        api.client.extensions.append(_Advertised())
