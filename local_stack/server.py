"""The API's HTTP server for the local stack (`twolane up`, `twolane serve`): uvicorn, with a
deadline on reading a request's headers.

uvicorn waits for a request's headers as long as the client likes: a client that opens a
connection and sends half a request line holds it open for good. `HeaderDeadline` (uvicorn's
h11 protocol plus a timer) answers 408 and closes the connection when a request's headers are
not whole within `seconds` of its first byte (or of the connection, for the first request).
The body's deadline, once a POST holds one of the API's slots, is `twolane.api.gate.Gate`'s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

_TIMEOUT_BODY = b'{"detail":"the request headers did not arrive in time"}'
REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                   b"connection: close\r\ncontent-length: " + str(len(_TIMEOUT_BODY)).encode()
                   + b"\r\n\r\n" + _TIMEOUT_BODY)


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers (`seconds`)."""

    seconds: float = 10.0
    _timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer = self.loop.call_later(self.seconds, self._late)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        if self._timer is None and self._between_requests():
            self._timer = self.loop.call_later(self.seconds, self._late)  # a new request begins
        super().data_received(data)
        if not self._between_requests() and self._timer is not None:
            self._timer.cancel()  # its headers are whole: the app has it now
            self._timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def _late(self) -> None:
        self._timer = None
        if self.transport.is_closing() or not self._between_requests():
            return
        if self.conn.their_state is h11.IDLE:
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


def with_deadline(seconds: float) -> type[HeaderDeadline]:
    """`HeaderDeadline` with its deadline set (uvicorn takes a protocol class, not an instance)."""
    return type("HeaderDeadline", (HeaderDeadline,), {"seconds": seconds})


def api_server(app: Any, host: str, port: int, read_seconds: float,
               log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for `app` whose request headers must arrive within `read_seconds`."""
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level,
                                         http=with_deadline(read_seconds)))
