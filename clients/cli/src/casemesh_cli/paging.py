"""How a list command reads a list call: page after page, each handed on as it
arrives (to `output.emit_pages`), and a page the gateway's rate limit refused
asked for again with the same token, once the wait it names is over. A list of
every ticket can be hundreds of calls, more than the limiter lets through at
once: waiting out its refusals keeps the list going from where it stood, where
failing would end it part-way and a second try would begin from the start."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

M = TypeVar("M", bound=Message)

# What a list asks for per call: the gateway's largest page for most lists
# (a bigger one is cut to it), a fifth of the calls of the services' default 20.
PAGE_SIZE = 100
# A page refused this many times in a row, or told to wait longer than this,
# ends the list: the refusal is then the answer (it says when to try again).
RETRIES = 5
LONGEST_WAIT_S = 60.0
# The gateway's reason for a rate limit; with no RetryInfo, a second's wait.
RATE_LIMITED = "RATE_LIMITED"


def pages(fetch: Callable[[str], M], sleep: Callable[[float], None] = time.sleep) -> Iterator[M]:
    """The pages of a list call, `fetch(page_token)` after `fetch(page_token)`
    until no `next_page_token` comes back; a page the rate limit refused is
    asked for again with the same token after the wait the gateway names."""
    token = ""
    while True:
        page = _fetch_waiting(fetch, token, sleep)
        yield page
        token = getattr(page, "next_page_token", "")
        if not token:
            return


def _fetch_waiting(fetch: Callable[[str], M], token: str, sleep: Callable[[float], None]) -> M:
    """The page at `token`, asked for again while the rate limit refuses it
    (at most RETRIES times, for at most LONGEST_WAIT_S each)."""
    refused = 0
    while True:
        try:
            return fetch(token)
        except grpc.RpcError as err:
            wait = rate_limit_wait(err)
            refused += 1
            if wait is None or wait > LONGEST_WAIT_S or refused > RETRIES:
                raise
            sleep(wait)


def rate_limit_wait(err: grpc.RpcError) -> float | None:
    """How long to wait before asking again, when `err` is a rate limit's
    refusal (RESOURCE_EXHAUSTED with a RetryInfo, or the gateway's
    RATE_LIMITED reason); None for any other failure."""
    if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    status = rpc_status.from_call(err)
    for detail in status.details if status is not None else ():
        retry = error_details_pb2.RetryInfo()
        if detail.Is(retry.DESCRIPTOR) and detail.Unpack(retry):
            return max(0.0, float(retry.retry_delay.ToTimedelta().total_seconds()))
    return 1.0 if RATE_LIMITED in reasons(status) else None


def reasons(status: Any) -> list[str]:
    """The ErrorInfo reasons a status carries (none for no status)."""
    found: list[str] = []
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info) and info.reason:
            found.append(info.reason)
    return found
