"""The sync loop: consume a batch, apply it to the ledger, push Taobao, emit, commit.

One batch at a time, in this order, so that every guarantee in the README's "How it works" holds:

1. decode and validate every message (bad input becomes a dead letter, never a crash);
2. apply the valid events to the ledger in one pipelined round trip (exactly once: the
   de-duplication key is written by the same Lua call as the effect, and the SKUs changed
   are marked pending in that same call);
3. push Taobao for the SKUs touched plus any pending SKU whose time has come (a failure
   leaves them pending; the ledger stays the truth);
4. produce one result per input, the alerts and the dead letters, and wait for the broker
   to acknowledge them; then mark the applications reported in the ledger;
5. only then commit the batch's offsets.

A crash anywhere before 5 redelivers the batch; the ledger de-duplicates it and the pending
set still pushes what never reached Taobao. An event whose application was never marked
reported is reported again as applied (its effect from then, its alerts with the same ids);
one already reported comes back as a duplicate. Redis or broker failures are retried in place
with backoff (the batch stays in hand); a Taobao ban or outage pauses consumption until it
ends. Each event gets a span continuing the producer's trace from the Kafka headers, and
its outputs carry that span's context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import (
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    set_span_in_context,
)

from connector.codec import AvroCodec
from connector.errors import DependencyError, InvalidEvent
from connector.events import StockEvent
from connector.kafka_io import EventConsumer, EventProducer, Inbound, Outbound
from connector.ledger import Ledger
from connector.projection import PushReport, TaobaoProjection
from connector.records import EventSource, StockAlert, SyncResult
from connector.reporting import (
    Applied,
    alerts_for_applied,
    alerts_for_rejection,
    alerts_for_transitions,
    rejected_result,
    result_for,
)
from connector.settings import KafkaSettings, SyncSettings
from connector.telemetry import (
    SECONDS_BUCKETS,
    extract_context,
    get_tracer,
    inject_context,
    meter,
    trace_id_of,
)
from connector.validate import parse_order, parse_warehouse

__all__ = ["Pipeline", "PipelineMetrics", "PipelineState"]

log = logging.getLogger(__name__)

RETRY_BASE_S: Final = 0.5
RETRY_MAX_S: Final = 15.0
PRODUCE_TIMEOUT_S: Final = 30.0
MAX_PAUSE_S: Final = 60.0
# A dead letter's value is cut to this, well under the producer's default 1 MB message
# limit (headers and key come on top).
DEAD_LETTER_MAX_BYTES: Final = 512 * 1024

_T = TypeVar("_T")


class _Stopped(Exception):
    """Shutdown was requested while a step was being retried: drop the batch uncommitted."""


@dataclass(frozen=True, slots=True)
class PipelineMetrics:
    events: Any  # counter: input events by topic kind and result status
    batches: Any  # histogram: batch duration
    ledger_s: Any  # histogram: one ledger round trip per batch
    dead_letters: Any  # counter
    alerts: Any  # counter by kind
    retries: Any  # counter: Redis/broker steps retried, by step

    meter: Any  # for the observable gauges bound to a pipeline's state

    @classmethod
    def create(cls, provider: MeterProvider | None = None) -> PipelineMetrics:
        m = meter(provider)
        return cls(
            meter=m,
            events=m.create_counter("sync.events", description="Input events by status"),
            batches=m.create_histogram(
                "sync.batch.duration",
                unit="s",
                explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
            ),
            ledger_s=m.create_histogram(
                "sync.ledger.duration",
                unit="s",
                explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
            ),
            dead_letters=m.create_counter("sync.dead_letters"),
            alerts=m.create_counter("sync.alerts"),
            retries=m.create_counter("sync.step.retries"),
        )

    def observe(self, state: PipelineState) -> None:
        """Gauges read from the pipeline's state at scrape time (no I/O in the callback)."""

        def lag(_: CallbackOptions) -> list[Observation]:
            return [
                Observation(n, {"topic": topic, "partition": str(partition)})
                for (topic, partition), n in state.lag.items()
            ]

        def pending(_: CallbackOptions) -> list[Observation]:
            return [Observation(state.pending_skus)]

        def paused(_: CallbackOptions) -> list[Observation]:
            return [Observation(1 if state.paused else 0)]

        self.meter.create_observable_gauge("sync.consumer.lag", callbacks=[lag])
        self.meter.create_observable_gauge("sync.pending.skus", callbacks=[pending])
        self.meter.create_observable_gauge("sync.paused", callbacks=[paused])


@dataclass(slots=True)
class PipelineState:
    """What readiness, metrics and operators look at (monotonic times)."""

    paused_until: float = 0.0  # consumption paused by a Taobao ban or outage
    last_loop_at: float = 0.0  # the loop came round: not wedged, even with no events
    failing_step: str | None = None  # a Redis/broker step currently being retried
    batches: int = 0
    pending_skus: int = 0  # SKUs Taobao has not confirmed yet
    lag: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def paused(self) -> bool:
        return self.paused_until > time.monotonic()


@dataclass(slots=True)
class _Message:
    inbound: Inbound
    span: Span
    source: EventSource
    event: StockEvent | None = None
    rejection: InvalidEvent | None = None
    event_id: str = ""


@dataclass(slots=True)
class _Batch:
    messages: list[_Message]
    outbound: list[Outbound] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Unpushed:
    """Where the batch's SKUs that were not pushed stand on Taobao."""

    versions: dict[str, int]  # the ledger version Taobao confirmed
    unmapped: set[str]  # known (cached) not to be listed


class Pipeline:
    """Runs the loop described in the module docstring."""

    def __init__(
        self,
        *,
        consumer: EventConsumer,
        producer: EventProducer,
        codec: AvroCodec,
        ledger: Ledger,
        projection: TaobaoProjection,
        kafka: KafkaSettings,
        sync: SyncSettings,
        tracer: Tracer | None = None,
        metrics: PipelineMetrics | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._codec = codec
        self._ledger = ledger
        self._projection = projection
        self._kafka = kafka
        self._sync = sync
        self._tracer = tracer or get_tracer()
        self._metrics = metrics or PipelineMetrics.create()
        self._clock_ms = clock_ms
        self._stop = asyncio.Event()
        self.state = PipelineState()
        self._metrics.observe(self.state)
        projection.on_item_done = self._progress

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished and committed."""
        self._stop = stop
        try:
            await self._loop(stop)
        except _Stopped as stopped:
            log.warning("stopped while retrying %s; nothing uncommitted is lost", stopped)

    async def _loop(self, stop: asyncio.Event) -> None:
        self.state.last_loop_at = time.monotonic()
        if stop.is_set():
            return
        # No forgotten push: whatever a previous run left pending goes out first.
        await self._sweep()
        next_sweep = time.monotonic() + self._sync.sweep_interval_s
        while not stop.is_set():
            self.state.last_loop_at = time.monotonic()
            self._resume_if_due()
            batch = await asyncio.to_thread(self._poll)
            if batch:
                await self.process(batch)
            elif time.monotonic() >= next_sweep:
                await self._sweep()
                next_sweep = time.monotonic() + self._sync.sweep_interval_s

    def _poll(self) -> list[Inbound]:
        # In the consumer's thread: the lag snapshot comes from librdkafka's cached values.
        batch = self._consumer.poll_batch(
            self._kafka.batch_max_events, self._kafka.batch_wait_ms / 1000
        )
        self.state.lag = self._consumer.lag()
        return batch

    async def process(self, batch: Sequence[Inbound]) -> None:
        started = time.monotonic()
        work = _Batch(
            await self._retrying("decode", lambda: self._off_loop(self._decode_all, batch))
        )
        try:
            applied = await self._apply(work)
            report, unpushed = await self._push(applied)
            await self._retrying(
                "encode", lambda: self._off_loop(self._emit, work, applied, report, unpushed)
            )
            await self._retrying(
                "produce",
                lambda: asyncio.to_thread(
                    self._producer.send, work.outbound, timeout_s=PRODUCE_TIMEOUT_S
                ),
            )
            # Only now is each application reported: a redelivery from here on is a plain
            # duplicate, while one that comes before (a crash, a lost reply) reports it again.
            reported = [item.event for _, item in applied if not item.outcome.duplicate]
            await self._retrying("ledger", lambda: self._ledger.mark_reported(reported))
            await self._retrying("commit", lambda: asyncio.to_thread(self._consumer.commit, batch))
        finally:
            for message in work.messages:
                message.span.end()
        self._backpressure(report)
        self.state.pending_skus = await self._retrying("ledger", self._ledger.pending_count)
        self.state.batches += 1
        self._metrics.batches.record(time.monotonic() - started)

    # ------------------------------------------------------------------ steps

    def _decode_all(self, batch: Sequence[Inbound]) -> list[_Message]:
        """Decode every message (in a worker thread: with a Schema Registry, an unknown
        schema id is an HTTP call); a registry outage ends the spans and is retried."""
        messages: list[_Message] = []
        try:
            for inbound in batch:
                messages.append(self._decode(inbound))
        except DependencyError:
            for message in messages:
                message.span.end()
            raise
        return messages

    def _decode(self, inbound: Inbound) -> _Message:
        span = self._tracer.start_span(
            f"{inbound.topic} process",
            context=extract_context(inbound.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": inbound.topic,
                "messaging.kafka.destination.partition": inbound.partition,
                "messaging.kafka.message.offset": inbound.offset,
            },
        )
        source = EventSource(inbound.topic, inbound.partition, inbound.offset)
        message = _Message(inbound, span, source)
        try:
            message.event = self._parse(inbound)
            message.event_id = message.event.event_id
            span.set_attribute("event.id", message.event_id)
        except InvalidEvent as exc:
            message.rejection = exc
            span.set_status(Status(StatusCode.ERROR, exc.reason))
            span.set_attribute("event.rejected", exc.reason)
        return message

    def _parse(self, inbound: Inbound) -> StockEvent:
        if not inbound.value:
            raise InvalidEvent("undecodable", "empty message value")
        now_ms = self._clock_ms()
        if inbound.topic == self._kafka.orders_topic:
            record = self._codec.decode_order(inbound.value)
            return parse_order(
                record,
                max_quantity=self._sync.max_quantity,
                max_lines=self._sync.max_lines,
                now_ms=now_ms,
            )
        if inbound.topic == self._kafka.warehouse_topic:
            record = self._codec.decode_warehouse(inbound.value)
            return parse_warehouse(record, max_quantity=self._sync.max_quantity, now_ms=now_ms)
        raise InvalidEvent("unknown_topic", f"no event type is read from topic {inbound.topic!r}")

    async def _apply(self, work: _Batch) -> list[tuple[_Message, Applied]]:
        valid = [m for m in work.messages if m.event is not None]
        if not valid:
            return []
        events = [m.event for m in valid if m.event is not None]
        started = time.monotonic()
        outcomes = await self._retrying("ledger", lambda: self._ledger.apply(events))
        self._metrics.ledger_s.record(time.monotonic() - started)
        self._child_spans(valid, "ledger apply", started)
        return [
            (m, Applied(m.event, outcome, m.source, trace_id_of(m.span)))
            for m, outcome in zip(valid, outcomes, strict=True)
            if m.event is not None
        ]

    async def _push(self, applied: list[tuple[_Message, Applied]]) -> tuple[PushReport, _Unpushed]:
        """Push what the ledger says is pending and due: every SKU this batch changed (the
        ledger marked it pending, due now) and any earlier one whose retry time has come.
        Unchanged SKUs (duplicates, refunds) cost no Taobao call.

        Returns the report and, for SKUs of this batch that were not pushed, the version
        Taobao has and which are not on Taobao (so their results can say where they stand)."""
        parents: dict[str, list[SpanContext]] = {}
        for message, item in applied:
            for line in item.outcome.lines:
                parents.setdefault(line.sku, []).append(message.span.get_span_context())
        due = await self._retrying("ledger", lambda: self._ledger.due(self._clock_ms(), 1000))
        report = await self._retrying(
            "taobao-push", lambda: self._projection.push(due, parents=parents)
        )
        others = [code for code in parents if code not in report.skus]
        stock = await self._retrying("ledger", lambda: self._ledger.stock(others))
        unmapped = await self._retrying("mapping", lambda: self._projection.known_unmapped(others))
        return report, _Unpushed({code: s.pushed for code, s in stock.items()}, unmapped)

    def _emit(
        self,
        work: _Batch,
        applied: list[tuple[_Message, Applied]],
        report: PushReport,
        unpushed: _Unpushed,
    ) -> None:
        # Encoding may reach the Schema Registry: on a retry, start the outputs afresh.
        work.outbound.clear()
        now_ms = self._clock_ms()
        by_message = {id(m): a for m, a in applied}
        for message in work.messages:
            item = by_message.get(id(message))
            if item is None:
                self._emit_rejection(work, message, now_ms)
                continue
            result = result_for(
                item, report.skus, unpushed.versions, now_ms=now_ms, unmapped=unpushed.unmapped
            )
            self._add_result(work, message, result)
            alerts = alerts_for_applied(
                item, report.skus, low_stock_threshold=self._sync.low_stock_threshold, now_ms=now_ms
            )
            for alert in alerts:
                self._add_alert(work, alert, message.span)
        for alert in alerts_for_transitions(report.transitions, now_ms=now_ms):
            self._add_alert(work, alert, None)

    def _emit_rejection(self, work: _Batch, message: _Message, now_ms: int) -> None:
        rejection = message.rejection
        assert rejection is not None
        trace_id = trace_id_of(message.span)
        kind = _kind_of(message.inbound.topic, self._kafka)
        result = rejected_result(
            message.source, rejection, event_id="", kind=kind, trace_id=trace_id, now_ms=now_ms
        )
        self._add_result(work, message, result)
        alert = alerts_for_rejection(
            message.source, rejection, event_id="", trace_id=trace_id, now_ms=now_ms
        )
        self._add_alert(work, alert, message.span)
        inbound = message.inbound
        value = inbound.value or b""
        headers: tuple[tuple[str, bytes], ...] = (
            *inbound.headers,
            ("dlq.reason", rejection.reason.encode()),
            ("dlq.error", str(rejection)[:1000].encode()),
            ("dlq.topic", inbound.topic.encode()),
            ("dlq.partition", str(inbound.partition).encode()),
            ("dlq.offset", str(inbound.offset).encode()),
        )
        if len(value) > DEAD_LETTER_MAX_BYTES:
            # A message the broker took compressed may be over the producer's size limit
            # uncompressed: a copy that can never be sent would stall the partition. The
            # original stays in the input topic at the offset named in the headers.
            headers += (("dlq.truncated_from", str(len(value)).encode()),)
            value = value[:DEAD_LETTER_MAX_BYTES]
        work.outbound.append(
            Outbound(
                self._kafka.dead_letter_topic,
                value,
                key=inbound.key,
                headers=inject_context(message.span, headers),
            )
        )
        self._metrics.dead_letters.add(1, {"reason": rejection.reason})

    def _add_result(self, work: _Batch, message: _Message, result: SyncResult) -> None:
        topic = self._kafka.results_topic
        work.outbound.append(
            Outbound(
                topic,
                self._codec.encode_result(result, topic=topic),
                key=(result.event_id or f"{result.source.topic}:{result.source.offset}").encode(),
                headers=inject_context(message.span),
            )
        )
        message.span.set_attribute("sync.status", result.status.value)
        self._metrics.events.add(1, {"type": result.event_type, "status": result.status.value})

    def _add_alert(self, work: _Batch, alert: StockAlert, span: Span | None) -> None:
        topic = self._kafka.alerts_topic
        key = alert.sku or (str(alert.num_iid) if alert.num_iid else alert.alert_id)
        work.outbound.append(
            Outbound(
                topic,
                self._codec.encode_alert(alert, topic=topic),
                key=key.encode(),
                headers=inject_context(span) if span is not None else (),
            )
        )
        self._metrics.alerts.add(1, {"kind": alert.kind.value})

    def _child_spans(self, messages: Sequence[_Message], name: str, started_s: float) -> None:
        # The step ran once for the whole batch; each event's trace shows it with its timing.
        end_ns = time.time_ns()
        start_ns = end_ns - int((time.monotonic() - started_s) * 1e9)
        for message in messages:
            child = self._tracer.start_span(
                name, context=set_span_in_context(message.span), start_time=start_ns
            )
            child.end(end_time=end_ns)

    # ------------------------------------------------------------------ support

    async def _off_loop(self, func: Callable[..., _T], *args: Any) -> _T:
        """Run Avro work in a worker thread only when it may call the Schema Registry over
        HTTP; without a registry it is pure CPU, and a thread hop would only cost time."""
        if self._codec.uses_registry:
            return await asyncio.to_thread(func, *args)
        return func(*args)

    def _progress(self) -> None:
        self.state.last_loop_at = time.monotonic()

    async def _sweep(self) -> None:
        report = await self._retrying("taobao-sweep", self._projection.sweep)
        self.state.pending_skus = await self._retrying("ledger", self._ledger.pending_count)
        alerts = alerts_for_transitions(report.transitions, now_ms=self._clock_ms())
        if alerts:
            work = _Batch([])
            for alert in alerts:
                self._add_alert(work, alert, None)
            await self._retrying(
                "produce",
                lambda: asyncio.to_thread(
                    self._producer.send, work.outbound, timeout_s=PRODUCE_TIMEOUT_S
                ),
            )
        self._backpressure(report)

    def _backpressure(self, report: PushReport) -> None:
        if report.retry_after_s is None:
            return
        pause_s = min(report.retry_after_s, MAX_PAUSE_S)
        self.state.paused_until = time.monotonic() + pause_s
        if not self._consumer.paused():
            log.warning(
                "Taobao unavailable or banning calls: pausing consumption for %.1fs", pause_s
            )
            self._consumer.pause_all()

    def _resume_if_due(self) -> None:
        if self._consumer.paused() and not self.state.paused:
            log.info("resuming consumption")
            self._consumer.resume_all()

    async def _retrying(self, step: str, action: Callable[[], Awaitable[_T]]) -> _T:
        """Retry a Redis or broker step with backoff until it works or shutdown is asked."""
        delay = RETRY_BASE_S
        while True:
            try:
                result = await action()
            except DependencyError as exc:
                self.state.failing_step = step
                self._metrics.retries.add(1, {"step": step})
                log.error("%s failed, retrying in %.1fs: %s", step, delay, exc)
                if self._stop.is_set():
                    raise _Stopped(step) from exc
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self.state.failing_step = None
            self.state.last_loop_at = time.monotonic()  # progress, for the stall check
            return result


def _kind_of(topic: str, kafka: KafkaSettings) -> str:
    if topic == kafka.orders_topic:
        return "order.unknown"
    if topic == kafka.warehouse_topic:
        return "warehouse.unknown"
    return "unknown"
