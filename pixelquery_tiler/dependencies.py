"""FastAPI dependencies of the tile routes: the ``View`` a path names, and query parameters with limits.

``ViewResolver`` is the path dependency: ``/collections/{cid}[/items/{iid}]`` plus ``datetime`` and
``snapshot_id`` become one ``View`` (validated: ``snapshot_id`` is an integer before it reaches a header or
the catalog). titiler hands that value to ``PixelQueryReader`` as its input. FastAPI caches a dependency's
value per request, so the caching dependency, the route class (``routing.ViewRoute``) and the reader all
receive the same ``View`` as an argument.

The other dependencies are titiler's with caps, so no single request can ask for unbounded work or output
(histogram bins, percentiles, expression length, algorithm parameters).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Path, Query
from rio_tiler.models import ImageData
from titiler.core.algorithm import algorithms as default_algorithms
from titiler.core.algorithm.base import BaseAlgorithm
from titiler.core.dependencies import (
    BidxExprParams,
    ColorMapParams,
    DefaultDependency,
    HistogramParams,
    StatisticsParams,
)

from .errors import InvalidParameter
from .index import CollectionIndex
from .reader import PIXEL_SELECTION
from .settings import Settings
from .view import View
from .warehouse import Warehouse

log = logging.getLogger(__name__)

#: at most one forced index re-read per collection in this many seconds (unknown item/snapshot ids)
FORCED_REFRESH_INTERVAL = 0.5

DatetimeParam = Annotated[
    str | None,
    Query(
        description="RFC 3339 instant, date (a whole UTC day) or interval `a/b`, `../b`, `a/..`: only "
        "observations acquired inside it."
    ),
]
if TYPE_CHECKING:
    AlgorithmName = str
else:  # the names titiler registers, known at run time: FastAPI publishes them as an enum and validates them
    AlgorithmName = Literal[tuple(default_algorithms.list())]
SnapshotParam = Annotated[
    int | None, Query(description="Read the collection as of this Iceberg snapshot (time travel).")
]


@dataclass
class ViewParams(DefaultDependency):
    """Reader options beyond the view: how observations combine and which bands form the image."""

    pixel_selection: Annotated[
        Literal[PIXEL_SELECTION] | None,  # type: ignore[valid-type]  # a tuple constant: one list of methods
        Query(description="How overlapping observations combine; `first` = newest observation first (default)."),
    ] = None
    bands: Annotated[str | None, Query(description="Comma-separated band common names, e.g. `red,green,blue`.")] = None

    def with_rendering(self, rendering: Mapping[str, str]) -> ViewParams:
        """These options with a rendering's ``bands`` (``rendering.default_rendering``), as if the query named them.

        The route class (``routing.ViewRoute``) hands a document endpoint the view's default rendering after
        FastAPI parsed the client's query; the document's reader then opens the bands its tile URLs name.
        """
        return dataclasses.replace(self, bands=rendering.get("bands", self.bands))


class ViewResolver:
    """Resolves request paths to ``View``s over ``warehouse`` (see module docstring)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self._forced: dict[str, float] = {}  # collection -> last forced index re-read (monotonic)

    def view(self, cid: str, iid: str | None, snapshot_id: int | None, datetime: str | None) -> View:
        """The request's ``View`` of collection ``cid`` (one item if ``iid``)."""
        collection = self.warehouse.collection(cid)
        index = self._index_for(cid, iid, snapshot_id)
        return View.create(collection, index=index, snapshot_id=snapshot_id, datetime=datetime, item_id=iid)

    def _index_for(self, cid: str, iid: str | None, snapshot_id: int | None) -> CollectionIndex:
        """The collection's index; re-read at once if it lacks the requested item or snapshot.

        A client that just ingested (maybe through another process) may ask for its new item before the
        periodic refresh; forced re-reads are rate-limited per collection so unknown ids cannot hammer
        the catalog.
        """
        collection = self.warehouse.collection(cid)
        index = collection.index()
        if _knows(index, iid, snapshot_id):
            return index
        now = time.monotonic()
        if now - self._forced.get(cid, float("-inf")) < FORCED_REFRESH_INTERVAL:
            return index
        self._forced[cid] = now
        collection.invalidate()
        return collection.index()

    def collection_dependency(self) -> Callable[..., View]:
        """titiler path dependency of collection routes: the view of a whole collection."""

        def collection_view(
            cid: Annotated[str, Path(description="Collection id.")],
            datetime: DatetimeParam = None,
            snapshot_id: SnapshotParam = None,
        ) -> View:
            return self.view(cid, None, snapshot_id, datetime)

        return collection_view

    def item_dependency(self) -> Callable[..., View]:
        """titiler path dependency of item routes: the view of one item."""

        def item_view(
            cid: Annotated[str, Path(description="Collection id.")],
            iid: Annotated[str, Path(description="Item id (one snapshot's observation).")],
            datetime: DatetimeParam = None,
            snapshot_id: SnapshotParam = None,
        ) -> View:
            return self.view(cid, iid, snapshot_id, datetime)

        return item_view


def _knows(index: CollectionIndex, iid: str | None, snapshot_id: int | None) -> bool:
    if iid is not None and index.item(iid) is None:
        return False
    if snapshot_id is not None:
        try:
            index.snapshot(snapshot_id)
        except LookupError:
            return False
    return True


# -- query parameters with limits ---------------------------------------------------------------------------------
def limited_dependencies(settings: Settings) -> dict[str, Any]:
    """titiler dependencies (by ``TilerFactory`` attribute name) with this server's caps."""
    max_bins, max_expression = settings.max_histogram_bins, settings.max_expression_length

    @dataclass
    class LayerParams(BidxExprParams):
        def __post_init__(self) -> None:
            if self.expression is not None and len(self.expression) > max_expression:
                raise InvalidParameter(f"expression is longer than {max_expression} characters")

    @dataclass
    class LimitedStatisticsParams(StatisticsParams):
        def __post_init__(self) -> None:
            super().__post_init__()
            bad = [p for p in self.percentiles or [] if not 0 <= p <= 100]
            if bad:
                raise InvalidParameter(f"percentiles must be between 0 and 100, got {bad[:5]}")
            if self.categories is not None and len(self.categories) > max_bins:
                raise InvalidParameter(f"at most {max_bins} categories")

    @dataclass
    class LimitedHistogramParams(HistogramParams):
        def __post_init__(self) -> None:
            super().__post_init__()
            bins = self.bins
            count = len(bins) - 1 if isinstance(bins, list) else bins
            if count is not None and not 1 <= int(count) <= max_bins:
                raise InvalidParameter(f"histogram_bins must be between 1 and {max_bins}")

    return {
        "layer_dependency": LayerParams,
        "stats_dependency": LimitedStatisticsParams,
        "histogram_dependency": LimitedHistogramParams,
        "process_dependency": checked_algorithms(),
        "colormap_dependency": checked_colormap(),
    }


def checked_colormap() -> Callable[..., Any]:
    """titiler's ``colormap_name``/``colormap`` dependency, answering a malformed ``colormap`` with 400.

    titiler maps only JSON syntax errors to 400; a well-formed JSON whose keys are not pixel values (``{"a": 1}``),
    whose colours do not parse, or whose intervals are not pairs raised a ``ValueError``/``TypeError`` and a 500.
    """

    @functools.wraps(ColorMapParams)
    def colormap(*args: Any, **kwargs: Any) -> Any:
        try:
            return ColorMapParams(*args, **kwargs)
        except (ValueError, TypeError, IndexError, KeyError, RecursionError) as exc:
            raise InvalidParameter(f"invalid colormap: {str(exc)[:200]}") from None

    return colormap


def checked_algorithms() -> Callable[..., Callable[[ImageData], ImageData] | None]:
    """titiler's ``algorithm``/``algorithm_params`` dependency, answering bad input with 400 instead of a 500.

    ``algorithm_params`` must be a JSON object, and an algorithm applied to an image it cannot process (e.g.
    ``grayscale`` on one band) is a bad parameter, not a server error.
    """

    def post_process(
        algorithm: Annotated[AlgorithmName | None, Query(description="Algorithm name")] = None,
        algorithm_params: Annotated[str | None, Query(description="Algorithm parameters (a JSON object)")] = None,
    ) -> Callable[[ImageData], ImageData] | None:
        if not algorithm:
            return None
        try:
            params = json.loads(algorithm_params) if algorithm_params else {}
        except (ValueError, RecursionError):
            raise InvalidParameter("algorithm_params must be a JSON object") from None
        if not isinstance(params, dict):
            raise InvalidParameter("algorithm_params must be a JSON object")
        try:
            instance = default_algorithms.get(algorithm)(**params)
        except (ValueError, TypeError) as exc:
            raise InvalidParameter(f"invalid algorithm_params for {algorithm}: {str(exc)[:200]}") from None
        return _checked(algorithm, instance)

    return post_process


def _checked(name: str, algorithm: BaseAlgorithm) -> Callable[[ImageData], ImageData]:
    def apply(image: ImageData) -> ImageData:
        if algorithm.input_nbands is not None and image.count != algorithm.input_nbands:
            raise InvalidParameter(
                f"algorithm {name} needs {algorithm.input_nbands} band(s), the image has {image.count}"
            )
        try:
            return algorithm(image)
        except (ValueError, TypeError, IndexError, ZeroDivisionError, FloatingPointError) as exc:
            raise InvalidParameter(f"algorithm {name} cannot process this image: {str(exc)[:200]}") from None

    return apply
