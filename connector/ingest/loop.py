"""The ingest loop: consume a batch, apply it to the ledger, emit, commit. Never waits for Taobao.

One batch at a time, in this order, so that every guarantee in the README's "How it works" holds:

1. decode and validate every message (bad input becomes a dead letter, never a crash);
2. apply the valid events to the ledger (exactly once: the de-duplication value is written
   by the same atomic Lua call as the effect, and the SKUs changed are marked pending in
   that same call: the outbox the projection loop drains; the call also records the last
   offset applied of each input partition and reads where Taobao stands for the events'
   SKUs);
3. tell the projection loop which SKUs changed (an in-process wake-up, with the events'
   span contexts for its links), once every ledger call of the batch succeeded;
4. queue one result per input, the alerts and the dead letters on the producer (only then:
   a batch that fails sends nothing);
5. wait for the broker to acknowledge all of them;
6. only then mark the ledger calls reported (one write per call: its outputs are out),
   record in the ledger's marker how far each partition's outputs are out, and commit the
   batch's offsets (all at once: each needs the acknowledgement, none needs the others).

Steps 1, 2 and 4's encoding run per slice of ``SLICE_EVENTS`` messages, overlapped: while
Redis applies slice k, Python decodes slice k+1 and encodes the outputs of slice k-1 (ledger
calls run one at a time, in input order, so each event still sees the ones before it;
outputs are queued in input order). Nothing is marked or committed before every output of
the batch is acknowledged.

Around the batches, ``connector.ingest.alignment`` keeps the consumer where the ledger is:
a partition assigned is held until the ledger's position for it is checked, a batch the
ledger refuses (it is behind, or gone) is read again, and while the ledger is gone nothing
is consumed.

A crash anywhere before the commit redelivers the batch; the ledger de-duplicates it and the pending
set still pushes what never reached Taobao. An event whose application was never marked
reported is reported again as applied (its effect from then, its alerts with the same ids);
one already reported comes back as a duplicate. Redis or broker failures are retried in place
with backoff (the batch stays in hand). A Taobao ban or outage does not reach this loop: the
projection waits it out on its own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from opentelemetry.trace import Span, SpanContext, Tracer, set_span_in_context

from connector.contracts.codec import AvroCodec
from connector.contracts.records import StockAlert, SyncResult
from connector.errors import DependencyError, LedgerBehind, LedgerLost
from connector.ingest.alignment import Alignment, CommittedOffsets
from connector.ingest.decoding import Decoded, Decoder, dead_letter
from connector.ingest.reporting import (
    Applied,
    Standing,
    alerts_for_applied,
    alerts_for_rejection,
    rejected_result,
    result_for,
)
from connector.kafka import (
    Delivery,
    EventConsumer,
    EventProducer,
    Inbound,
    Outbound,
)
from connector.ledger.guard import LedgerGuard
from connector.ledger.ledger import Ledger
from connector.ledger.outcomes import TaobaoView
from connector.ledger.positions import PartitionKey
from connector.metrics import SyncMetrics
from connector.push.mapping import MappingCache
from connector.retrying import LoopHealth, Stopped, retry_step
from connector.settings import KafkaSettings, SyncSettings
from connector.telemetry import get_tracer, inject_context, trace_id_of

__all__ = ["Changed", "IngestLoop", "IngestState"]

log = logging.getLogger(__name__)

PRODUCE_TIMEOUT_S: Final = 30.0
# Messages per slice of a batch: each slice is one ledger call, overlapped with decoding
# the next slice and emitting the one before (see IngestLoop._slices).
SLICE_EVENTS: Final = 250
# Event-loop turns redis-py's pipeline takes from the call to writing it (2 measured with
# a socket timeout set, one more for margin): fewer only lose the overlap, never order.
_SEND_TURNS: Final = 3

_T = TypeVar("_T")
# A slice's applied events, where Taobao stood for its SKUs, and the ledger call's id to
# mark (None: it stamped nothing).
_Applied = tuple[list[tuple["Decoded", "Applied"]], dict[str, TaobaoView], str | None]

# Told once per batch, after its ledger calls: the SKUs they changed, with the span
# contexts of the events.
Changed = Callable[[Mapping[str, Sequence[SpanContext]]], None]


@dataclass(slots=True)
class IngestState(LoopHealth):
    """What readiness, metrics and operators look at."""

    batches: int = 0
    lag: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(slots=True)
class _Batch:
    messages: list[Decoded]
    outbound: list[Outbound] = field(default_factory=list)
    # Counted per batch and added to the metrics once per label set: an OpenTelemetry
    # Counter.add with attributes costs tens of microseconds, too much once per event.
    events: Counter[tuple[str, str]] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Slice:
    """Part of a batch on its way through the ledger (see ``IngestLoop._slices``)."""

    work: _Batch
    ledger: asyncio.Task[_Applied] | None = None
    applied: list[tuple[Decoded, Applied]] = field(default_factory=list)
    views: dict[str, TaobaoView] = field(default_factory=dict)


class IngestLoop:
    """Runs the loop described in the module docstring."""

    def __init__(
        self,
        *,
        consumer: EventConsumer,
        producer: EventProducer,
        codec: AvroCodec,
        ledger: Ledger,
        mapping: MappingCache,
        kafka: KafkaSettings,
        sync: SyncSettings,
        on_changed: Changed = lambda _: None,
        tracer: Tracer | None = None,
        metrics: SyncMetrics | None = None,
        guard: LedgerGuard | None = None,
        offsets: CommittedOffsets | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._codec = codec
        self._ledger = ledger
        self._mapping = mapping
        self._kafka = kafka
        self._sync = sync
        self._on_changed = on_changed
        self._tracer = tracer or get_tracer()
        self._metrics = metrics or SyncMetrics.create()
        self._clock_ms = clock_ms
        self._decoder = Decoder(codec, kafka, sync, self._tracer, clock_ms=clock_ms)
        self._stop = asyncio.Event()
        self.state = IngestState()
        self._metrics.observe_ingest(self.state)
        self.guard = guard or LedgerGuard()
        self._aligned = Alignment(
            consumer=consumer,
            offsets=offsets or consumer,
            ledger=ledger,
            guard=self.guard,
            retrying=self._retrying,
            send_alert=self._send_alert,
            metrics=self._metrics,
            clock_ms=clock_ms,
        )

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished and committed.

        Each batch is committed before the next poll: a rebalance (served inside the poll)
        then never finds a processed batch uncommitted (``connector.kafka``).
        """
        self._stop = stop
        try:
            await self._aligned.open()
            while not stop.is_set():
                self.state.progress()
                if self.guard.lost:
                    await self._aligned.wait_restored(stop)
                    continue
                batch = await asyncio.to_thread(self._poll)
                await self._aligned.verify_assigned()
                if batch:
                    await self._process_aligned(batch)
                await self._aligned.check()
        except Stopped as stopped:
            log.warning("ingest stopped while retrying %s; nothing uncommitted is lost", stopped)

    async def _process_aligned(self, batch: Sequence[Inbound]) -> None:
        """``process``; a batch the ledger refuses (lost, or behind) is read again."""
        if self.guard.lost:  # found lost since the poll (by the projection, say)
            await self._aligned.refused(LedgerLost("lost"), batch)
            return
        try:
            await self.process(batch)
        except (LedgerBehind, LedgerLost) as refused:
            await self._aligned.refused(refused, batch)

    def _poll(self) -> list[Inbound]:
        # In the consumer's thread: the lag snapshot comes from librdkafka's cached values.
        batch = self._consumer.poll_batch(
            self._kafka.batch_max_events, self._kafka.batch_wait_ms / 1000
        )
        self.state.lag = self._consumer.lag()
        return batch

    async def process(self, batch: Sequence[Inbound]) -> None:
        """Decode, apply, emit and commit one batch."""
        started = time.monotonic()
        work = _Batch([])
        delivery = self._producer.start()
        try:
            attempts = await self._slices(batch, work, delivery)
            await self._produce(work, delivery)
            # Only now is each application reported: a redelivery from here on is a plain
            # duplicate, while one that comes before (a crash, a lost reply) reports it again.
            # Marking and committing both wait for the outputs' acknowledgement, not for
            # each other: either order is safe (a redelivery before the mark is reported
            # again as the application; a commit before it means no redelivery), so the
            # two round trips overlap.
            reported = _positions(batch)
            outcomes = await asyncio.gather(
                *(self._mark_reported(attempt) for attempt in attempts),
                self._retrying("ledger", lambda: self._ledger.record_reported(reported)),
                self._retrying("commit", lambda: asyncio.to_thread(self._consumer.commit, batch)),
                return_exceptions=True,
            )
            for failed in outcomes:
                if isinstance(failed, BaseException):
                    raise failed
        finally:
            for message in work.messages:
                message.span.end()
        self.state.batches += 1
        self._count(work)
        self._metrics.batches.record(time.monotonic() - started)

    async def _slices(
        self, batch: Sequence[Inbound], work: _Batch, delivery: Delivery
    ) -> list[str]:
        """Decode, apply and emit the batch in slices, overlapping Redis with Python.

        While the ledger applies slice k (one call at a time, in order: each sees the ones
        before it), this decodes slice k+1 and emits slice k-1. The outputs go to the
        producer once every ledger call of the batch has succeeded (so a batch that fails
        sends nothing), the last slice's while it is emitted; the projection is woken
        once, then too. Returns the ledger calls' ids to mark once the outputs are out.
        """
        attempts: list[str] = []
        changed: dict[str, list[SpanContext]] = {}
        in_flight: _Slice | None = None  # the slice whose ledger call may be running
        try:
            for offset in range(0, len(batch), SLICE_EVENTS):
                part = batch[offset : offset + SLICE_EVENTS]
                messages = await self._retrying(
                    "decode", functools.partial(self._off_loop, self._decode, part)
                )
                work.messages += messages
                done, in_flight = in_flight, _Slice(_Batch(messages))
                if done is not None:
                    await self._settle(done, attempts, changed)
                # Started only now: ledger calls never overlap each other. The earlier
                # calls' ids go with it: their outputs and this call's go out together.
                in_flight.ledger = asyncio.create_task(
                    self._apply(in_flight.work, tuple(attempts), _positions(part))
                )
                for _ in range(_SEND_TURNS):  # let it write its call before the CPU work below
                    await asyncio.sleep(0)
                if done is not None:
                    await self._emit_slice(done, work)
            if in_flight is not None:
                await self._settle(in_flight, attempts, changed)
                self._on_changed(changed)
                delivery.add(work.outbound)
                await self._emit_slice(in_flight, work)
                delivery.add(in_flight.work.outbound)
        finally:
            if in_flight is not None and in_flight.ledger is not None:
                await _cancelled(in_flight.ledger)
        return attempts

    @staticmethod
    async def _settle(
        part: _Slice, attempts: list[str], changed: dict[str, list[SpanContext]]
    ) -> None:
        """Wait for the slice's ledger call; keep its id to mark (if it stamped anything)
        and the SKUs it changed."""
        assert part.ledger is not None
        task, part.ledger = part.ledger, None
        part.applied, part.views, attempt = await task
        if attempt is not None:
            attempts.append(attempt)
        for sku, parents in _changed(part.applied).items():
            changed.setdefault(sku, []).extend(parents)

    async def _emit_slice(self, part: _Slice, work: _Batch) -> None:
        standing = await self._standing(part.views)
        await self._retrying(
            "encode", lambda: self._off_loop(self._emit, part.work, part.applied, standing)
        )
        work.outbound += part.work.outbound
        work.events.update(part.work.events)
        work.alerts.update(part.work.alerts)
        work.dead_letters.update(part.work.dead_letters)

    async def _produce(self, work: _Batch, delivery: Delivery) -> None:
        """Wait for the queued outputs; a retry sends them all again."""
        first = True

        async def attempt() -> None:
            nonlocal first
            if first:
                first = False
                await asyncio.to_thread(delivery.wait, timeout_s=PRODUCE_TIMEOUT_S)
            else:
                await asyncio.to_thread(
                    self._producer.send, work.outbound, timeout_s=PRODUCE_TIMEOUT_S
                )

        await self._retrying("produce", attempt)

    def _count(self, work: _Batch) -> None:
        m = self._metrics
        for (kind, status), n in work.events.items():
            m.events.add(n, {"type": kind, "status": status})
        for alert_kind, n in work.alerts.items():
            m.alerts.add(n, {"kind": alert_kind})
        for reason, n in work.dead_letters.items():
            m.dead_letters.add(n, {"reason": reason})

    # ------------------------------------------------------------------ steps

    def _decode(self, batch: Sequence[Inbound]) -> list[Decoded]:
        """Decode every message; a registry outage ends the spans begun and is retried."""
        messages: list[Decoded] = []
        try:
            for inbound in batch:
                messages.append(self._decoder.decode(inbound))
        except DependencyError:
            for message in messages:
                message.span.end()
            raise
        return messages

    async def _apply(
        self, work: _Batch, companions: Sequence[str], positions: dict[PartitionKey, int]
    ) -> _Applied:
        """Apply the slice's valid events and record its partitions' positions (a slice
        of dead letters too); also returns the ledger call's id (``None``: nothing to
        mark) for the reported mark. ``companions``: the ids of the batch's earlier calls
        (``Ledger.apply_viewing``)."""
        valid = [m for m in work.messages if m.event is not None]
        events = [m.event for m in valid if m.event is not None]
        started = time.monotonic()
        application = await self._retrying(
            "ledger",
            lambda: self._ledger.apply_viewing(events, companions=companions, positions=positions),
        )
        if not valid:
            return [], {}, None
        outcomes, views = application.outcomes, application.views
        self._metrics.ledger_s.record(time.monotonic() - started)
        self._child_spans(valid, "ledger apply", started)
        applied = [
            (m, Applied(m.event, outcome, m.source, trace_id_of(m.span)))
            for m, outcome in zip(valid, outcomes, strict=True)
            if m.event is not None
        ]
        # A batch of plain duplicates stamped nothing with this call's id: nothing to mark.
        stamped = any(not outcome.duplicate for outcome in outcomes)
        return applied, views, application.attempt if stamped else None

    async def _send_alert(self, alert: StockAlert) -> None:
        """One alert on its own (the ledger lost or behind), acknowledged before going on."""
        self._metrics.alerts.add(1, {"kind": alert.kind.value})
        topic = self._kafka.alerts_topic
        outbound = [
            Outbound(
                topic, self._codec.encode_alert(alert, topic=topic), key=alert.alert_id.encode()
            )
        ]
        await self._retrying(
            "produce",
            lambda: asyncio.to_thread(self._producer.send, outbound, timeout_s=PRODUCE_TIMEOUT_S),
        )

    async def _mark_reported(self, attempt: str | None) -> None:
        if attempt is not None:
            await self._retrying("ledger", lambda: self._ledger.mark_reported(attempt))

    async def _standing(self, views: dict[str, TaobaoView]) -> Standing:
        """Where Taobao stands for the batch's SKUs: read by the ledger step itself, and
        which codes the mapping cache knows are not on Taobao. No Taobao call."""
        if not views:
            return Standing({}, safety_stock=self._sync.safety_stock)
        unmapped = await self._retrying("mapping", lambda: self._mapping.known_unmapped(views))
        return Standing(views, unmapped, self._sync.safety_stock)

    def _emit(
        self, work: _Batch, applied: list[tuple[Decoded, Applied]], standing: Standing
    ) -> None:
        # Encoding may reach the Schema Registry: on a retry, start the outputs afresh.
        work.outbound.clear()
        work.events.clear()
        work.alerts.clear()
        work.dead_letters.clear()
        now_ms = self._clock_ms()
        by_message = {id(m): a for m, a in applied}
        for message in work.messages:
            item = by_message.get(id(message))
            if item is None:
                self._emit_rejection(work, message, now_ms)
                continue
            self._add_result(work, message, result_for(item, standing, now_ms=now_ms))
            alerts = alerts_for_applied(
                item, low_stock_threshold=self._sync.low_stock_threshold, now_ms=now_ms
            )
            for alert in alerts:
                self._add_alert(work, alert, message.span)

    def _emit_rejection(self, work: _Batch, message: Decoded, now_ms: int) -> None:
        rejection = message.rejection
        assert rejection is not None
        trace_id = trace_id_of(message.span)
        kind = self._decoder.kind_of(message.inbound.topic)
        result = rejected_result(
            message.source, rejection, event_id="", kind=kind, trace_id=trace_id, now_ms=now_ms
        )
        self._add_result(work, message, result)
        alert = alerts_for_rejection(
            message.source, rejection, event_id="", trace_id=trace_id, now_ms=now_ms
        )
        self._add_alert(work, alert, message.span)
        work.outbound.append(dead_letter(message, self._kafka.dead_letter_topic))
        work.dead_letters[rejection.reason] += 1

    def _add_result(self, work: _Batch, message: Decoded, result: SyncResult) -> None:
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
        work.events[result.event_type, result.status.value] += 1

    def _add_alert(self, work: _Batch, alert: StockAlert, span: Span) -> None:
        topic = self._kafka.alerts_topic
        key = alert.sku or alert.alert_id
        work.outbound.append(
            Outbound(
                topic,
                self._codec.encode_alert(alert, topic=topic),
                key=key.encode(),
                headers=inject_context(span),
            )
        )
        work.alerts[alert.kind.value] += 1

    def _child_spans(self, messages: Sequence[Decoded], name: str, started_s: float) -> None:
        # The step ran once for the whole batch; each event's trace shows it with its timing.
        end_ns = time.time_ns()
        start_ns = end_ns - int((time.monotonic() - started_s) * 1e9)
        for message in messages:
            if not message.span.is_recording():
                continue  # sampled out or tracing off: a child would be thrown away unbuilt
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

    async def _retrying(self, step: str, action: Callable[[], Awaitable[_T]]) -> _T:
        return await retry_step(
            step,
            action,
            stop=self._stop,
            health=self.state,
            retries=self._metrics.retries,
            loop="ingest",
        )


def _positions(part: Sequence[Inbound]) -> dict[PartitionKey, int]:
    """The last offset of each partition among these messages."""
    last: dict[PartitionKey, int] = {}
    for message in part:
        key = (message.topic, message.partition)
        if message.offset > last.get(key, -1):
            last[key] = message.offset
    return last


def _changed(applied: Sequence[tuple[Decoded, Applied]]) -> dict[str, list[SpanContext]]:
    """The SKUs this batch changed, each with the span contexts of the events that did."""
    changed: dict[str, list[SpanContext]] = {}
    for message, item in applied:
        for line in item.outcome.lines:
            if not line.duplicate:
                changed.setdefault(line.sku, []).append(message.span.get_span_context())
    return changed


async def _cancelled(task: asyncio.Task[Any]) -> None:
    """Cancel a ledger call left in flight by a failure, and wait until it has stopped (a
    call cut off leaves its chunks applied or not, whole: the batch is redelivered). Its
    outcome no longer matters; our own cancellation still propagates."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not report it as lost
