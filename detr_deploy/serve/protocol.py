"""uvicorn's h11 protocol with deadlines a slow client cannot stretch and JSON for what it refuses itself.

Plain uvicorn (0.55, ``http="h11"``) leaves three doors open that this subclass closes:

* **time**: its keep-alive timer starts only after a first answer and any byte received cancels it, so
  a client that opens a connection and sends nothing, or sends its request head one byte a second,
  holds the connection for ever. Here a connection has ``DETR_KEEP_ALIVE_S`` to start a request
  (also the first one) and ``DETR_HEADER_TIMEOUT_S`` from the end of the previous answer (or from
  opening) to complete its head: then 408 JSON if part of a head came, else a silent close. A body
  still arriving after the answer (the app answered without reading it all) gets what is left of
  ``DETR_REQUEST_TIMEOUT_S`` from the request's head, then the connection is closed.
* **connections**: more than ``DETR_MAX_CONNECTIONS`` open at once: the request of a connection
  over the cap is marked (scope key ``detr.over_capacity``) and the app answers it 503 JSON with
  ``Retry-After`` and closes it (uvicorn's own ``limit_concurrency`` would answer in plain text).
* **the parser's refusals**: what h11 cannot parse (two different ``Content-Length``, a bad request
  line, a head still incomplete after 16 KiB, a ``Transfer-Encoding`` other than chunked) uvicorn
  answers ``400 text/plain``. Here it is JSON ``{"error", "status"}`` with h11's status: 400, 414
  (the request line alone passed the limit), 431 (the headers did) or 501, and the connection closes.

Nothing here imports torch or the rest of detr_deploy (the Docker image copies this folder).
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["OVER_CAPACITY", "ConnectionLimits", "ServiceH11Protocol", "json_response_bytes"]

log = logging.getLogger("detr_deploy.serve.service")

# The scope key that marks a request on a connection over DETR_MAX_CONNECTIONS: (open, limit).
OVER_CAPACITY = "detr.over_capacity"
# h11's limit on a request head still incomplete (uvicorn's default h11_max_incomplete_event_size).
MAX_INCOMPLETE_HEAD_BYTES = 16 * 1024


class ConnectionLimits(NamedTuple):
    max_connections: int
    header_timeout_s: float
    request_timeout_s: float  # the keep-alive time is uvicorn's timeout_keep_alive


def json_response_bytes(status: int, message: str, headers: Sequence[Tuple[bytes, bytes]] = ()) -> bytes:
    """A whole HTTP/1.1 answer ``{"error": message, "status": status}`` that closes the connection."""
    body = (json.dumps({"error": message, "status": status}, separators=(",", ":")) + "\n").encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"content-type: application/json", b"content-length: %d" % len(body), b"connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class _RecordingConnection(h11.Connection):
    """h11's connection, keeping the last protocol error: uvicorn drops it before answering."""

    last_error: Optional[h11.RemoteProtocolError] = None

    def next_event(self):
        try:
            return super().next_event()
        except h11.RemoteProtocolError as error:
            self.last_error = error
            raise


class ServiceH11Protocol(H11Protocol):
    """uvicorn's ``H11Protocol`` with :class:`ConnectionLimits` (see the module's docstring).

    uvicorn builds one per connection with ``config``, ``server_state`` and ``app_state``; ``limits``
    comes from a ``functools.partial`` (``create_server``)."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.conn = _RecordingConnection(
            h11.SERVER, self.config.h11_max_incomplete_event_size or MAX_INCOMPLETE_HEAD_BYTES
        )
        self._phase = ""  # "head": waiting for a request head, "request": being answered, "body": answered
        self._timer: Optional[asyncio.TimerHandle] = None
        self._request_started = 0.0

    # ---- uvicorn's hooks

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        open_connections = len(self.connections)
        if open_connections > self.limits.max_connections:
            app, mark = self.app, (open_connections, self.limits.max_connections)

            async def over_capacity(scope, receive, send):
                await app(dict(scope, **{OVER_CAPACITY: mark}), receive, send)

            self.app = over_capacity
        # uvicorn arms its keep-alive timer only after an answer: the first request gets one too
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        self._watch()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def send_400_response(self, msg: str) -> None:
        """What h11 refused, as JSON with h11's status hint (uvicorn: 400 text/plain)."""
        error = self.conn.last_error
        status = error.error_status_hint if error is not None else 400
        detail = str(error) if error is not None else msg
        if len(detail) > 200:  # h11 quotes what it could not parse: up to the whole 16 KiB
            detail = detail[:200] + "..."
        if status == 431:
            buffered = self.conn.trailing_data[0]
            limit = self.config.h11_max_incomplete_event_size or MAX_INCOMPLETE_HEAD_BYTES
            if b"\r\n" not in buffered:
                status, message = 414, f"the request line is longer than {limit} bytes"
            else:
                message = f"the request head is longer than {limit} bytes"
        elif status == 501:
            message = f"not implemented: {detail}"
        else:
            message = f"malformed HTTP request: {detail}"
        log.warning("refused by the HTTP parser: %d %s", status, message)
        self._close_with(status, message)

    # ---- the deadlines

    def _watch(self) -> None:
        """Arms the deadline of the connection's phase when the phase changes."""
        if self.transport is None or self.transport.is_closing():
            self._cancel_timer()
            return
        ours, theirs = self.conn.our_state, self.conn.their_state
        if ours is h11.IDLE and theirs is h11.IDLE:
            if self._phase != "head":  # between requests: the next head has its deadline
                self._phase = "head"
                self._arm(self.limits.header_timeout_s, self._head_late)
        elif ours is h11.DONE and theirs is h11.SEND_BODY:
            if self._phase != "body":  # answered, the body still coming: what is left of the request's time
                self._phase = "body"
                remaining = self._request_started + self.limits.request_timeout_s - self.loop.time()
                self._arm(max(remaining, 0.0), self._body_late)
        elif self._phase != "request":  # the app is answering: its own time limit applies
            self._phase = "request"
            self._request_started = self.loop.time()
            self._cancel_timer()

    def _arm(self, seconds: float, callback) -> None:
        self._cancel_timer()
        self._timer = self.loop.call_later(seconds, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_late(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._phase != "head":
            return
        if self.conn.trailing_data[0]:  # part of a head came: say why the connection ends
            seconds = self.limits.header_timeout_s
            message = f"the request head did not arrive within DETR_HEADER_TIMEOUT_S={seconds:g} s"
            log.warning("%s", message)
            self._close_with(408, message)
        else:  # an idle connection: nothing to answer
            self.transport.close()

    def _body_late(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            log.warning("closed a connection whose request body was still arriving after its answer")
            self.transport.close()

    def _close_with(self, status: int, message: str) -> None:
        self._cancel_timer()
        self.transport.write(json_response_bytes(status, message, self.server_state.default_headers))
        self.transport.close()
