"""structlog JSON logs carrying the current trace id, with contact details masked."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from opentelemetry import trace

from casemesh.platform.masking import mask_value


def _add_trace_ids(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


def _mask_contacts(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if key not in ("timestamp", "level", "trace_id", "span_id", "service"):
            event_dict[key] = mask_value(value)
    return event_dict


class _CallerGone(logging.Filter):
    """grpc's asyncio server logs, with a traceback at ERROR, a reply it could
    not send because the caller had already hung up or run out of deadline.
    Nothing failed on our side: it is kept as a one-line warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("grpc") and "ExecuteBatchError" in record.getMessage():
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def configure_logging(service: str, level: str = "info", fmt: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )

    def add_service(
        _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        # Not a context variable: background threads do not inherit those.
        event_dict.setdefault("service", service)
        return event_dict

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_ids,
        structlog.processors.format_exc_info,
        _mask_contacts,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Libraries (FastStream, aiokafka, grpc, psycopg) log through the standard
    # library: render their records the same way, to the same stream.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared[:-1], structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _mask_contacts,
                renderer,
            ],
        )
    )
    handler.addFilter(_CallerGone())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.INFO, logging.getLevelNamesMapping()[level.upper()]))
    # Chatty at INFO and not useful to operators.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def library_logger(name: str) -> logging.Logger:
    """A standard-library logger for libraries that take one (rendered as above)."""
    return logging.getLogger(name)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
