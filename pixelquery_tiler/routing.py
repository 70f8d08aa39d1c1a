"""``ViewRoute``: the route class of the tile routes, which hands the request's ``View`` on explicitly.

titiler's endpoints return finished ``Response``s and know nothing of our ``View``. The route class wraps each
endpoint once, at registration, into one that also takes two dependencies, the path dependency's ``View``
(FastAPI solves it once per request, so it is the very value the reader got) and the ``CachePolicy``
computed from it (``cache_policy_dependency``, which answers 304 before anything is read). After the
endpoint returns, the wrapper adds the caching and diagnostics headers (``caching.response_headers``) to its
2xx response. Endpoints that take the ``Request`` get a ``ViewRequest``: the same request plus the view, for
the templates' context processors (the WMTS capabilities' ``Time`` dimension), which receive only a request.
Nothing travels through ``request.state``, the ASGI scope or context variables.

Documents whose tile URLs clients use as they are (``documents``: TileJSON, WMTS capabilities) hand out the
view's default rendering when the client named none (``rendering.default_rendering``; raw 16-bit or 6-band
data is black or not encodable as PNG in a map client): their ``ViewRequest``'s query, which titiler copies
into the tile URLs, has the defaults appended, and their reader options (``ViewParams``) the default bands.
FastAPI parsed the client's own query, so the ETag still describes it (the defaults follow from it and the
view).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from .caching import CachePolicy, NotModified, cache_policy, etag_matches, response_headers
from .dependencies import ViewParams
from .rendering import default_rendering, has_rendering_params
from .view import View


class ViewRequest(Request):
    """A request together with the ``View`` it is answered from (what an endpoint's templates render)."""

    def __init__(self, request: Request, view: View, rendering: Mapping[str, str] | None = None) -> None:
        """``request`` answered from ``view``, with ``rendering``'s parameters appended to its query if given."""
        scope = request.scope
        if rendering:
            query = urlencode([*request.query_params.multi_items(), *rendering.items()])
            scope = dict(scope, query_string=query.encode("latin-1"))
        super().__init__(scope, request.receive)
        self.view = view


def view_route_class(
    path_dependency: Callable[..., View], head_max_age: int, documents: Collection[str] = ()
) -> type[APIRoute]:
    """An ``APIRoute`` class for routes whose ``View`` comes from ``path_dependency`` (see module docstring).

    ``documents``: the paths (as the router registers them, before any prefix) of the routes that hand out the
    view's default rendering.
    """
    policy_dependency = cache_policy_dependency(path_dependency, head_max_age)

    class ViewRoute(APIRoute):
        def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
            if not getattr(endpoint, "__view_route__", False):  # include_router re-creates routes: wrap once
                endpoint = with_view(endpoint, path_dependency, policy_dependency, document=path in documents)
            super().__init__(path, endpoint, **kwargs)

    return ViewRoute


def cache_policy_dependency(
    path_dependency: Callable[..., View], head_max_age: int
) -> Callable[..., Awaitable[CachePolicy]]:
    """Dependency: the ``CachePolicy`` of a request from its ``View``; ``NotModified`` (304) when
    ``If-None-Match`` matches, so a revalidation reads nothing."""

    async def view_cache_policy(request: Request, view: View = Depends(path_dependency)) -> CachePolicy:
        # async: a hash and a header compare, not worth a threadpool hop
        policy = cache_policy(view, request, head_max_age)
        if etag_matches(request.headers.get("if-none-match"), policy.etag):
            raise NotModified(policy)
        return policy

    return view_cache_policy


def with_view(
    endpoint: Callable[..., Any],
    path_dependency: Callable[..., View],
    policy_dependency: Callable[..., Any],
    document: bool = False,
) -> Callable[..., Any]:
    """``endpoint`` taking the request's ``View`` and ``CachePolicy`` too, and adding their headers to its response.

    ``document``: the endpoint gets the view's default rendering when its request names none (module docstring).
    """
    signature = inspect.signature(endpoint, eval_str=True)
    requests = [name for name, p in signature.parameters.items() if p.annotation is Request]
    extra = [
        inspect.Parameter("_view_policy", inspect.Parameter.KEYWORD_ONLY, default=Depends(policy_dependency)),
        inspect.Parameter("_view", inspect.Parameter.KEYWORD_ONLY, default=Depends(path_dependency)),
        inspect.Parameter("_view_response", inspect.Parameter.KEYWORD_ONLY, annotation=Response),
    ]
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values()]

    def before(kwargs: dict[str, Any], view: View) -> None:
        rendering = {}
        if document and requests and not has_rendering_params(kwargs[requests[0]].query_params.keys()):
            rendering = default_rendering(view.index, view.positions)
        for name in requests:
            kwargs[name] = ViewRequest(kwargs[name], view, rendering)
        if rendering:
            for name, value in kwargs.items():
                if isinstance(value, ViewParams):
                    kwargs[name] = value.with_rendering(rendering)

    def after(result: Any, policy: CachePolicy, view: View, sub_response: Response) -> Any:
        # a returned Response is sent as is; otherwise FastAPI adds the sub-response's headers to the one it builds
        target = result if isinstance(result, Response) else sub_response
        if isinstance(result, Response) and not 200 <= result.status_code < 300:
            return result
        target.headers.update(response_headers(policy, view))
        return result

    if inspect.iscoroutinefunction(endpoint):

        async def call(*, _view_policy: CachePolicy, _view: View, _view_response: Response, **kwargs: Any) -> Any:
            before(kwargs, _view)
            return after(await endpoint(**kwargs), _view_policy, _view, _view_response)

    else:

        def call(*, _view_policy: CachePolicy, _view: View, _view_response: Response, **kwargs: Any) -> Any:  # type: ignore[misc]
            before(kwargs, _view)
            return after(endpoint(**kwargs), _view_policy, _view, _view_response)

    call.__signature__ = signature.replace(parameters=[*extra, *own])  # type: ignore[attr-defined]  # read by FastAPI
    call.__name__ = endpoint.__name__  # the route name titiler's url_for looks up
    call.__doc__ = endpoint.__doc__
    call.__view_route__ = True  # type: ignore[attr-defined]
    return call
