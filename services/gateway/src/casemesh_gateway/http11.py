"""The HTTP/1.1 connections of the gateway's HTTP port: uvicorn's h11
protocol, with bounds on what a caller can hold open by sending slowly or
too much. A request's head (request line and headers) must be whole within
HEAD_TIMEOUT_S of its first byte, and a new connection's first request must
begin within the keep-alive time; a head longer than HEAD_MAX_BYTES is
answered 400 (h11's `max_incomplete_event_size`, as uvicorn passes it on).
A request answered before its body was all sent (refused, or too slow) is
read on and dropped for LINGER_S at most (so the caller reads the answer
rather than a reset), then its connection is closed; if the rest comes
within that time, the connection is kept alive for the next request as
after any answer. Its body's own pace is bounded by the application
(`web.BODY_WITHIN_S`). An answer its caller stops reading (a stream left
unread behind a small receive window) may wait for it WRITE_STALL_S, or as
long as what waits to be sent needs at the slowest download the gateway
allows; past that, the connection is cut off: the call ends as if its caller
had hung up, with the call to the service behind it, and the call's slot
is taken again (a write waits for the caller with no bound of its own)."""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from casemesh.platform.logging import get_logger
from casemesh_gateway.export import SLOWEST_DOWNLOAD

log = get_logger(__name__)

HEAD_TIMEOUT_S = 20.0
# As much as the proxy in front lets through, and more than a browser sends.
HEAD_MAX_BYTES = 64 * 1024
LINGER_S = 5.0
# How long an answer may wait for its caller to read on, at least.
WRITE_STALL_S = 60.0


class Http11(H11Protocol):
    """One connection: closed when its caller is too slow with a request's
    head, or with the rest of a body the answer did not wait for."""

    _cutoff: asyncio.TimerHandle | None = None
    # Whether `_cutoff` ends the reading of a body already answered.
    _lingering = False
    # Cuts the connection off unless its caller reads on first.
    _stall: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._close_in(self.timeout_keep_alive)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.IDLE:
            if self._lingering:
                self._kept_alive()
            if self.conn.trailing_data[0]:
                self._close_in(HEAD_TIMEOUT_S)  # a head begun, not yet whole
        elif self.conn.our_state is not h11.DONE:
            self._spare()  # a request being answered: its body's pace is the call's

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self._close_in(LINGER_S)
            self._lingering = True

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._spare()
        self._read_on()

    def pause_writing(self) -> None:
        """What waits to be sent has filled the buffer: the answer waits for
        its caller to read, for as long as the rest needs at the slowest
        download (WRITE_STALL_S at least)."""
        super().pause_writing()
        waiting = self.transport.get_write_buffer_size()
        bound = max(WRITE_STALL_S, waiting / SLOWEST_DOWNLOAD)
        self._read_on()
        self._stall = self.loop.call_later(bound, self._stalled, bound)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._read_on()

    def _read_on(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _stalled(self, bound: float) -> None:
        """Closed at once, the bytes still waiting dropped (a close would
        wait for them to be sent, for ever): uvicorn hears the caller gone,
        and so does the call."""
        self._stall = None
        log.info("http.caller_stopped_reading", waited_s=round(bound, 1))
        self.transport.abort()

    def _close_in(self, seconds: float) -> None:
        """Closes the connection `seconds` from now unless spared first (a
        closing already due sooner stands)."""
        at = self.loop.time() + seconds
        if self._cutoff is not None and self._cutoff.when() <= at:
            return
        self._spare()
        self._cutoff = self.loop.call_at(at, self._cut_off)

    def _spare(self) -> None:
        self._lingering = False
        if self._cutoff is not None:
            self._cutoff.cancel()
            self._cutoff = None

    def _kept_alive(self) -> None:
        """The rest of an answered request's body came: the connection waits
        for its next request as after any answer (uvicorn's keep-alive time,
        which the rest coming had stopped)."""
        self._spare()
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def _cut_off(self) -> None:
        self._cutoff = None
        if not self.transport.is_closing():
            self.transport.close()
