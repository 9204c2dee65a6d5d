"""An OpenTelemetry-instrumented app, configured by nothing but the standard OTEL_* variables.

Run by tests/e2e/test_otlp.py as a subprocess: it raises and records two exceptions inside spans,
logs a third with logger.exception through the OTel logging handler, flushes, and prints the trace
id of each (lowercase hex) as JSON on stdout.
"""

from __future__ import annotations

import json
import logging

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode


def charge(order_id: int) -> None:
    raise ConnectionRefusedError(f"connection refused to payments-db:5432 while charging order {order_id}")


def main() -> None:
    resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # OTEL_EXPORTER_OTLP_*
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter()))
    logger = logging.getLogger("shop.orders")
    logger.addHandler(LoggingHandler(level=logging.ERROR, logger_provider=logger_provider))

    tracer = trace.get_tracer("shop.checkout", "1.4.0")
    trace_ids: dict[str, str] = {}

    # 1. An exception that escapes its span: the SDK records it and sets the span's status to ERROR.
    try:
        with tracer.start_as_current_span("POST /charge") as span:
            trace_ids["charge"] = format(span.get_span_context().trace_id, "032x")
            charge(42)
    except ConnectionRefusedError:
        pass

    # 2. An exception handled inside its span, recorded by hand.
    with tracer.start_as_current_span("GET /stock") as span:
        trace_ids["stock"] = format(span.get_span_context().trace_id, "032x")
        try:
            {"sku-1": 3}["sku-42"]
        except KeyError as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, "unknown sku"))

    # 3. An exception logged with logger.exception (the log record carries the span's trace id).
    with tracer.start_as_current_span("parse order") as span:
        trace_ids["parse"] = format(span.get_span_context().trace_id, "032x")
        try:
            int("forty-two")
        except ValueError:
            logger.exception("could not parse the quantity of order 42")

    tracer_provider.shutdown()  # flushes the spans
    logger_provider.shutdown()  # flushes the log records
    print(json.dumps(trace_ids))


if __name__ == "__main__":
    main()
