"""What operators read in the logs of every service."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
import structlog

from casemesh.platform.logging import configure_logging


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    configure_logging("test")

    def read() -> list[dict[str, object]]:
        return [json.loads(line) for line in out.getvalue().splitlines() if line]

    yield read
    root.handlers[:], root.level = handlers, level
    structlog.reset_defaults()


def test_a_reply_to_a_caller_that_hung_up_is_a_warning_not_an_error(lines) -> None:  # type: ignore[no-untyped-def]
    grpc_core = logging.getLogger("grpc._cython.cygrpc")
    try:
        raise RuntimeError('Failed "execute_batch": (<grpc._cython.cygrpc.SendMessageOperation>)')
    except RuntimeError:
        grpc_core.exception(
            "ExecuteBatchError raised in core by servicer method [%s]",
            "/casemesh.v1.HelpCenterService/CreateArticle",
        )
    [line] = lines()
    assert line["level"] == "warning"
    assert "CreateArticle" in str(line["event"]) and "exception" not in line


def test_other_library_errors_stay_errors_with_their_traceback(lines) -> None:  # type: ignore[no-untyped-def]
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("grpc._cython.cygrpc").exception("Unexpected error in servicer")
    [line] = lines()
    assert line["level"] == "error" and "ValueError: boom" in str(line["exception"])
