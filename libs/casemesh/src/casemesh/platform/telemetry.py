"""OpenTelemetry tracing: set-up from the standard OTEL_* variables, and
propagation of trace context through gRPC metadata and Kafka headers."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

_configured = False


def configure_tracing(service: str, exporter: SpanExporter | None = None) -> None:
    """Installs a tracer provider. OTEL_TRACES_EXPORTER picks the exporter:
    `otlp` (endpoint from OTEL_EXPORTER_OTLP_ENDPOINT), `console`, or `none`
    (the default: spans are still made, so trace ids reach the logs)."""
    global _configured
    if _configured:
        return
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", f"casemesh-{service}")}
    )
    provider = TracerProvider(resource=resource)
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter is None and choice == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    elif exporter is None and choice == "console":
        exporter = ConsoleSpanExporter()
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _configured = True


@functools.cache
def tracer(name: str) -> trace.Tracer:
    """One per name and process (a proxy until the provider is set up)."""
    return trace.get_tracer(name)


def inject_metadata() -> list[tuple[str, str]]:
    """The current trace context as gRPC metadata."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


def extract_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Context:
    """The trace context a call's metadata carries. Binary (`-bin`) values
    are a client's own bytes, not W3C trace context: left out."""
    carrier = {k: v for k, v in (metadata or ()) if isinstance(v, str)}
    return propagate.extract(carrier)


def inject_headers() -> list[tuple[str, bytes]]:
    """The current trace context as Kafka headers (`traceparent`, `tracestate`)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


def extract_headers(headers: Sequence[tuple[str, bytes]] | dict[str, str]) -> Context:
    if isinstance(headers, dict):
        return propagate.extract(headers)
    return propagate.extract({k: v.decode() for k, v in headers})
