"""Tracing chosen by the standard OTEL_* variables, exported over OTLP to a real receiver;
and JSON logs carrying trace ids with secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from connector.errors import ConfigError
from connector.service.logs import JsonFormatter
from connector.telemetry import get_tracer, setup_tracing


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def otlp_receiver() -> Iterator[str]:
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.integration
def test_spans_are_exported_over_otlp_to_the_configured_endpoint(
    otlp_receiver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The OTLP exporter reads its endpoint from the process environment, as in a pod.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver)
    env = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SERVICE_NAME": "stock-sync-test"}
    provider = setup_tracing(env, default_service="taobao-connector")
    assert provider is not None

    with get_tracer(provider).start_as_current_span("orders process"):
        pass
    provider.force_flush()
    provider.shutdown()

    paths = [path for path, _ in _Receiver.received]
    assert paths == ["/v1/traces"]
    body = _Receiver.received[0][1]
    assert b"orders process" in body
    assert b"stock-sync-test" in body


@pytest.mark.parametrize("env", [{"OTEL_TRACES_EXPORTER": "none"}, {"OTEL_SDK_DISABLED": "true"}])
def test_tracing_can_be_switched_off(env: dict[str, str]) -> None:
    assert setup_tracing(env, default_service="x") is None


def test_an_unknown_exporter_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        setup_tracing({"OTEL_TRACES_EXPORTER": "zipkin"}, default_service="x")


def test_json_logs_carry_the_trace_and_never_a_secret() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(secrets=["s3cr3t-session-token"]))
    logger = logging.getLogger("test.json-logs")
    logger.addHandler(handler)
    logger.propagate = False
    provider = setup_tracing({"OTEL_TRACES_EXPORTER": "console"}, default_service="x")
    assert provider is not None
    try:
        with get_tracer(provider).start_as_current_span("work") as span:
            logger.warning("refresh failed for s3cr3t-session-token")
            trace_id = f"{span.get_span_context().trace_id:032x}"
    finally:
        logger.removeHandler(handler)
        provider.shutdown()

    entry = json.loads(stream.getvalue())
    assert entry["level"] == "WARNING"
    assert entry["trace_id"] == trace_id
    assert "s3cr3t-session-token" not in stream.getvalue()
    assert entry["message"] == "refresh failed for ***"


def test_a_secret_that_json_would_escape_is_still_scrubbed() -> None:
    secret = 'pa"ss\\word'
    formatter = JsonFormatter(secrets=[secret])
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "auth with %s", (secret,), None)

    line = formatter.format(record)

    assert json.loads(line)["message"] == "auth with ***"
    assert "ss\\\\word" not in line
