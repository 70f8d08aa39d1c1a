"""uvicorn's HTTP/1.1 protocol with a header-read timeout.

uvicorn (h11) starts its keep-alive timer only after a response, so a client that opens a connection and
sends its request headers slowly holds that connection (and its file descriptor) indefinitely. The event
loop keeps serving everyone else, but held connections add up; this protocol closes a connection whose
request headers have not all arrived ``PIXELQUERY_HEADER_TIMEOUT`` seconds (default 10) after it opened
or after its previous response.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from .settings import Settings

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _configured_timeout() -> float:
    return Settings().header_timeout


class HeaderTimeoutProtocol(H11Protocol):
    """``H11Protocol`` that closes connections whose request headers arrive too slowly."""

    #: seconds; ``None``: ``Settings().header_timeout`` (subclasses may fix it)
    header_timeout: float | None = None

    def __init__(
        self, config: Config, server_state: ServerState, app_state: dict, _loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.timeout = self.header_timeout or _configured_timeout()
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's own
        """Start the header timer: a new connection must send its request headers in time."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Stop the timer once a request's headers are complete (its body may take longer)."""
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers are complete
            self._disarm()

    def on_response_complete(self) -> None:
        """Re-arm for the next request on a kept-alive connection."""
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel the timer so a closed connection leaves no callback behind."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.timeout, self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            log.info("closing a connection whose request headers took over %s s", self.timeout)
            self.transport.close()
