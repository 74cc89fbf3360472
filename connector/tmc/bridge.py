"""The message-service bridge: Taobao's own orders, from TMC into the orders topic.

Runs inside ``taobao-connector run`` when ``TAOBAO_TMC_ENABLED=true``, on every replica;
one at a time holds the bridge's lease and works, the others stand by and take over
within a lease's time (``LEASE_S``) of its holder dying. One holder keeps a trade's
events in order on the topic and the idle polling to one replica's calls.

Each round: consume a batch (``taobao.tmc.messages.consume``), read the trades it names in
pages (``connector.tmc.fetch``), derive each line's events from its trade's state
(``connector.tmc.batch``), drop what was already produced (``connector.tmc.sent``),
produce the rest (keyed by order id, so a line's events stay in order) and wait for the
broker's acknowledgement, mark them produced, and only then confirm the messages. A bridge
killed anywhere in between leaves the messages unconfirmed: Taobao delivers them again, the
same events are derived with the same ids, and the ledger applies each line once.

A failing round (Taobao refusing, the broker or Redis away) is retried on the same batch
after a pause; nothing is confirmed until its outputs are acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from opentelemetry.trace import Span, Tracer

from connector.contracts.codec import AvroCodec
from connector.errors import (
    DependencyError,
    TaobaoAuthError,
    TaobaoCallLimited,
    TaobaoError,
    TaobaoSessionError,
)
from connector.kafka import EventProducer, Outbound
from connector.keys import Keys
from connector.metrics import BridgeMetrics
from connector.push.leases import Leases
from connector.redis_client import AsyncRedis
from connector.settings import KafkaSettings, TaobaoSettings
from connector.taobao.client import TopClient
from connector.telemetry import get_tracer, inject_context
from connector.tmc import api
from connector.tmc.batch import BatchOutputs, batch_outputs, trades_named
from connector.tmc.fetch import TradeReader
from connector.tmc.item_watch import ItemWatch
from connector.tmc.sent import SentRecords
from connector.tmc.trades import ITEM_TOPICS, TRADE_TOPICS, TmcMessage

__all__ = ["LEASE_S", "BridgeState", "TmcBridge"]

log = logging.getLogger(__name__)

LEASE_S: Final = 15.0
PRODUCE_TIMEOUT_S: Final = 30.0
ROUND_MESSAGES: Final = 1_000  # messages consumed before their trades are read
RETRY_S: Final = 2.0  # pause before a failed round is tried again
AUTH_RETRY_S: Final = 30.0
LIMITED_RETRY_MAX_S: Final = 60.0
DEFAULT_SHOP: Final = "taobao"


@dataclass(slots=True)
class BridgeState:
    """What readiness and the gauges read: no I/O."""

    active: bool = False  # this replica holds the lease and works
    last_error: str | None = None
    last_round_ms: int = 0
    messages: int = 0  # consumed since start


class TmcBridge:
    def __init__(
        self,
        *,
        client: TopClient,
        redis: AsyncRedis,
        keys: Keys,
        producer: EventProducer,
        codec: AvroCodec,
        kafka: KafkaSettings,
        taobao: TaobaoSettings,
        dedupe_ttl_s: int,
        metrics: BridgeMetrics,
        tracer: Tracer | None = None,
        reader: TradeReader | None = None,
        watch: ItemWatch | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._client = client
        self._keys = keys
        self._leases = Leases(redis)
        self._producer = producer
        self._codec = codec
        self._kafka = kafka
        self._taobao = taobao
        self._sent = SentRecords(redis, keys, ttl_s=dedupe_ttl_s)
        self._reader = reader or TradeReader(client, clock_ms=clock_ms)
        self._watch = watch  # item messages: changes the connector did not make
        self._metrics = metrics
        self._tracer = tracer or get_tracer()
        self._clock_ms = clock_ms
        self.state = BridgeState()
        metrics.observe(lambda: self.state.active)

    async def run(self, stop: asyncio.Event) -> None:
        """Stand by, hold the lease and bridge, until ``stop``."""
        while not stop.is_set():
            try:
                token = await self._leases.acquire(self._keys.tmc_lease, LEASE_S)
            except DependencyError as exc:
                self._failed(exc)
                token = None
            if token is None:
                await _pause(stop, LEASE_S / 3)
                continue
            log.info("bridging Taobao's messages (group %s) to %s", self._taobao.tmc_group,
                     self._kafka.orders_topic)  # fmt: skip
            try:
                await self._lead(token, stop)
            finally:
                self.state.active = False
                with contextlib.suppress(DependencyError):
                    await self._leases.release(self._keys.tmc_lease, token)

    async def _lead(self, token: str, stop: asyncio.Event) -> None:
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep(token, lost))
        self.state.active = True
        if self._watch is not None:
            self._watch.lead()
        try:
            await self._until_permitted(stop, lost)
            idle_s = self._taobao.tmc_poll_s
            while not (stop.is_set() or lost.is_set()):
                before = self.state.messages
                if await self._round(stop, lost):
                    idle_s = self._taobao.tmc_poll_s
                    continue  # more are waiting: consume again at once
                await _pause(stop, idle_s, lost)
                empty = self.state.messages == before
                grown = idle_s * 2 if empty else self._taobao.tmc_poll_s
                idle_s = min(self._taobao.tmc_idle_max_s, grown)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if lost.is_set():
            log.warning("lost the message-service bridge's lease: standing by")

    async def _keep(self, token: str, lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            try:
                held = await self._leases.renew(self._keys.tmc_lease, token, LEASE_S)
            except DependencyError:
                held = False  # cannot tell: behave as if lost, never as if held
            if not held:
                lost.set()
                return

    async def _until_permitted(self, stop: asyncio.Event, lost: asyncio.Event) -> None:
        topics = (*TRADE_TOPICS, *ITEM_TOPICS) if self._watch else TRADE_TOPICS
        while not (stop.is_set() or lost.is_set()):
            try:
                await api.permit(self._client, topics)
            except TaobaoError as exc:
                self._failed(exc)
                await _pause(stop, _retry_s(exc), lost)
            else:
                return

    async def _consume(self) -> tuple[list[TmcMessage], bool]:
        """Consume while the answers come full, up to ``ROUND_MESSAGES``: in a sale one scan
        of the trades then serves several consumes. Whether the last answer was full."""
        messages: list[TmcMessage] = []
        size = self._taobao.tmc_batch
        while True:
            try:
                got = await api.consume(self._client, self._taobao.tmc_group, size)
            except TaobaoError:
                if not messages:
                    raise
                return messages, True  # bridge what is in hand; consume again after
            messages += got
            if len(got) < size or len(messages) + size > ROUND_MESSAGES:
                return messages, len(got) >= size

    async def _round(self, stop: asyncio.Event, lost: asyncio.Event) -> bool:
        """One round of messages consumed and bridged (retried until done); whether more
        are waiting."""
        try:
            messages, full = await self._consume()
        except TaobaoError as exc:
            self._failed(exc)
            await _pause(stop, _retry_s(exc), lost)
            return False
        if not messages:
            await self._settle_items()
            self._done()
            return False
        while not stop.is_set():
            try:
                await self._bridge(messages)
                self._done()
                break
            except (TaobaoError, DependencyError) as exc:
                self._failed(exc)
                # Kept in hand and tried again (a lost lease too: what this replica
                # consumed is only redelivered after the visibility timeout otherwise).
                await _pause(stop, _retry_s(exc))
        if not full:
            await self._settle_items()  # caught up: what explains a change has been read
        return full

    async def _bridge(self, messages: list[TmcMessage]) -> None:
        with self._tracer.start_as_current_span(
            "tmc bridge batch", attributes={"tmc.messages": len(messages)}
        ) as span:
            self.state.messages += len(messages)
            for message in messages:
                self._metrics.messages.add(1, {"topic": message.topic})
            read = await self._reader.read(trades_named(messages))
            span.set_attribute("tmc.trades", len(read.trades))
            span.set_attribute("tmc.trade_calls", read.calls)
            outputs = batch_outputs(
                messages, read.trades, read.missing, default_shop=DEFAULT_SHOP,
                now_ms=self._clock_ms(),
            )  # fmt: skip
            if self._watch is not None:
                self._watch.hold(messages)  # judged once the bridge has caught up
            ids = [e.event_id for e in outputs.events] + [a.alert_id for a in outputs.alerts]
            unsent = await self._sent.unsent(ids)
            await self._produce(outputs, unsent, span)
            await self._sent.mark(sorted(unsent))
            await api.confirm(self._client, outputs.confirm)
            span.set_attribute("tmc.events", len(unsent))

    async def _produce(self, outputs: BatchOutputs, unsent: set[str], span: Span) -> None:
        headers = inject_context(span)
        orders, alerts = self._kafka.orders_topic, self._kafka.alerts_topic
        messages = [
            Outbound(
                orders, self._codec.encode_order(e, topic=orders), e.order_id.encode(), headers
            )
            for e in outputs.events
            if e.event_id in unsent
        ]
        messages += [
            Outbound(alerts, self._codec.encode_alert(a, topic=alerts), a.alert_id.encode())
            for a in outputs.alerts
            if a.alert_id in unsent
        ]
        if not messages:
            return
        await asyncio.to_thread(self._producer.send, messages, timeout_s=PRODUCE_TIMEOUT_S)
        now_ms = self._clock_ms()
        for event in outputs.events:
            if event.event_id in unsent:
                self._metrics.orders.add(1, {"type": event.type.value})
                self._metrics.lag_s.record(max(0, now_ms - event.occurred_at_ms) / 1000)
        for alert in outputs.alerts:
            if alert.alert_id in unsent:
                log.warning("%s: %s", alert.kind.value, alert.message)

    async def _settle_items(self) -> None:
        """Once caught up: judge the item changes held long enough, report what others
        made."""
        if self._watch is None or not self._watch.held:
            return
        try:
            alerts, judged = await self._watch.settle(self._reader.cache)
            outputs = BatchOutputs(alerts=alerts)
            unsent = await self._sent.unsent([a.alert_id for a in alerts])
            with self._tracer.start_as_current_span("tmc item changes") as span:
                await self._produce(outputs, unsent, span)
            await self._sent.mark(sorted(unsent))
        except (TaobaoError, DependencyError) as exc:
            self._failed(exc)  # (judged again with the next round: the alert ids are stable)
            return
        self._watch.done(judged)

    def _done(self) -> None:
        self.state.last_error = None
        self.state.last_round_ms = self._clock_ms()

    def _failed(self, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if message != self.state.last_error:
            log.warning("message-service bridge: %s; retrying", message)
        self.state.last_error = message


def _retry_s(exc: Exception) -> float:
    if isinstance(exc, TaobaoCallLimited):
        # (Capped: a quota spent until midnight is looked at again every minute.)
        return min(max(exc.retry_after_s, RETRY_S), LIMITED_RETRY_MAX_S)
    if isinstance(exc, TaobaoAuthError | TaobaoSessionError):
        return AUTH_RETRY_S  # an operator has to act: do not spend the budget meanwhile
    return RETRY_S


async def _pause(stop: asyncio.Event, seconds: float, lost: asyncio.Event | None = None) -> None:
    """Sleep ``seconds``, or less if ``stop`` (or ``lost``) is set meanwhile."""
    waits = [asyncio.create_task(stop.wait())]
    if lost is not None:
        waits.append(asyncio.create_task(lost.wait()))
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
