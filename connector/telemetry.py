"""OpenTelemetry wiring: tracers, metric instruments and trace context over Kafka headers.

Components take a ``Tracer`` and their instrument set as arguments; when none is given they
use the global providers, which are no-ops until ``setup_tracing`` installs real ones.

The exporter is chosen by the standard variables: ``OTEL_TRACES_EXPORTER`` (``otlp``,
``console`` or ``none``; when unset, ``otlp`` if an OTLP endpoint is set, else ``none``),
``OTEL_EXPORTER_OTLP_*`` (endpoint, headers, protocol; read by the exporter itself),
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` (read by ``Resource.create``).
``OTEL_SDK_DISABLED=true`` turns tracing off.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import Counter, Histogram, Meter, MeterProvider
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from connector.errors import ConfigError

__all__ = [
    "SECONDS_BUCKETS",
    "Headers",
    "TaobaoMetrics",
    "extract_context",
    "get_tracer",
    "inject_context",
    "meter",
    "setup_metrics",
    "setup_tracing",
    "trace_id_of",
]

INSTRUMENTATION = "connector"
# Seconds. The SDK's default buckets are meant for milliseconds (0, 5, 10, 25 … 10000):
# on second values every latency would land in the first bucket or two.
SECONDS_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
Headers = Sequence[tuple[str, bytes]]

_PROPAGATOR = TraceContextTextMapPropagator()


def get_tracer(provider: TracerProvider | None = None) -> Tracer:
    return trace.get_tracer(INSTRUMENTATION, tracer_provider=provider)


def setup_tracing(env: Mapping[str, str], *, default_service: str) -> SdkTracerProvider | None:
    """Build the tracer provider the ``OTEL_*`` variables ask for (``None`` when disabled).

    The caller owns the provider (pass it to components, ``shutdown()`` it on exit); nothing
    global is installed.
    """
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    # Unset: OTLP when an endpoint is configured, else nothing (rather than retrying
    # exports to a localhost collector that is not there and logging every failure).
    default = "otlp" if endpoint else "none"
    exporter_name = (env.get("OTEL_TRACES_EXPORTER") or default).strip().lower()
    if exporter_name == "none":
        return None
    # OTEL_RESOURCE_ATTRIBUTES is merged in by Resource.create; the service name is ours.
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or default_service})
    provider = SdkTracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(_exporter(exporter_name)))
    return provider


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        # HTTP/protobuf: the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT etc. itself.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ConfigError(f"OTEL_TRACES_EXPORTER={name!r} is not supported (otlp, console, none)")


class _HeaderGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = [v.decode("latin-1") for k, v in carrier if k.lower() == key and v is not None]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k for k, _ in carrier]


class _HeaderSetter(Setter[list[tuple[str, bytes]]]):
    def set(self, carrier: list[tuple[str, bytes]], key: str, value: str) -> None:
        carrier.append((key, value.encode("latin-1")))


def extract_context(headers: Headers) -> Context:
    """The W3C trace context (``traceparent``/``tracestate``) found in Kafka headers."""
    return _PROPAGATOR.extract(headers, getter=_HeaderGetter())


def inject_context(
    span: Span, headers: Iterable[tuple[str, bytes]] = ()
) -> tuple[tuple[str, bytes], ...]:
    """Headers plus ``traceparent`` (and ``tracestate``) pointing at ``span``."""
    carrier = [(k, v) for k, v in headers if k not in ("traceparent", "tracestate")]
    if span.get_span_context().is_valid:  # (tracing off and no upstream trace: nothing to add)
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span), setter=_HeaderSetter())
    return tuple(carrier)


def trace_id_of(span: Span) -> str | None:
    context = span.get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def meter(provider: MeterProvider | None = None) -> Meter:
    return metrics.get_meter(INSTRUMENTATION, meter_provider=provider)


@dataclass(frozen=True, slots=True)
class TaobaoMetrics:
    """Instruments of the TOP client."""

    calls: Counter  # by method and outcome
    call_duration_s: Histogram  # one HTTP exchange, by method
    retries: Counter  # by method and error class
    budget_wait_s: Histogram  # time spent waiting for the shared call budget, by method
    token_refreshes: Counter

    @classmethod
    def create(cls, provider: MeterProvider | None = None) -> TaobaoMetrics:
        m = meter(provider)
        return cls(
            calls=m.create_counter("taobao.calls", description="TOP calls by outcome"),
            call_duration_s=m.create_histogram(
                "taobao.call.duration",
                unit="s",
                description="One TOP HTTP exchange",
                explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
            ),
            retries=m.create_counter("taobao.retries", description="TOP call retries"),
            budget_wait_s=m.create_histogram(
                "taobao.budget.wait",
                unit="s",
                description="Wait for the shared call budget",
                explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
            ),
            token_refreshes=m.create_counter(
                "taobao.token.refreshes", description="Access token refreshes"
            ),
        )


def setup_metrics() -> tuple[SdkMeterProvider, Any]:
    """A meter provider whose instruments are served as Prometheus text.

    Returns the provider (pass it to components) and the ``prometheus_client`` registry to
    render on ``/metrics``; a registry of our own, so nothing global is touched.
    """
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    reader = PrometheusMetricReader(disable_target_info=True, registry=registry)
    return SdkMeterProvider(metric_readers=[reader]), registry
