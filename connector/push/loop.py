"""The projection loop: drain the ledger's pending outbox to Taobao, under the shared budget.

Runs beside the ingest loop in the same process, on every replica, sharing nothing with it
but the ledger (and an in-process wake-up when a batch changed SKUs, and the
``LedgerGuard``: while the ledger is lost, no pass runs). Each pass:

1. if Taobao has banned the app's calls (code 7, recorded in Redis by whichever replica
   was told), wait until the ban ends: no call is made, nothing spins;
2. take the due pending SKUs, oldest change first (``SYNC_PUSH_BATCH_SKUS`` at most), and
   push them item by item under the per-item lease (``connector.push.projection``): a
   replica reads the ledger after taking the lease, so no stale overwrite, and confirms
   only what Taobao accepted;
3. produce one push record per item pushed (``KAFKA_PUSHES_TOPIC``) and the Taobao-side
   alerts (shelf changes, refusals, unknown codes, a ban), and wait for the broker;
4. when the pass hit an app-wide condition (a ban, or every item failing: an outage), wait
   it out; otherwise go on at once if more is due, or sleep until ingest reports a change
   or ``SYNC_SWEEP_INTERVAL_S`` passes (for retries whose time has come).

The first pass is the start-up sweep: whatever an earlier run left pending goes out first,
while ingest is already consuming. On shutdown no new item is started; the items in flight
finish their calls. Redis or broker failures are retried in place; a push record is
produced at least once (a crash after the push and before the record is acknowledged
leaves the SKUs confirmed and that record unsent: the push records are an audit trail,
the ledger is the truth).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol, TypeVar

from opentelemetry.trace import SpanContext

from connector.contracts.codec import AvroCodec
from connector.contracts.records import StockAlert
from connector.errors import DependencyError, LedgerLost
from connector.kafka import EventProducer, Outbound
from connector.ledger.guard import LedgerGuard, lost_alert
from connector.ledger.ledger import Ledger
from connector.metrics import SyncMetrics
from connector.push.links import EventLinks
from connector.push.outcomes import ItemPush, PushReport
from connector.push.reporting import (
    alerts_for_push,
    ban_alert,
    push_record,
    quota_alert,
    session_alerts,
)
from connector.retrying import LoopHealth, Stopped, retry_step, wait_any
from connector.settings import KafkaSettings, SyncSettings
from connector.taobao.budget import QuotaView
from connector.taobao.tokens import Expiry

__all__ = ["ProjectionLoop", "ProjectionState", "Pusher"]

log = logging.getLogger(__name__)

PRODUCE_TIMEOUT_S: Final = 30.0
# A long ban is waited out in slices, so the ban key (which another replica may extend)
# is read again now and then.
MAX_PAUSE_S: Final = 60.0
GAUGE_REFRESH_S: Final = 1.0
_OUTAGE: Final = "Taobao unavailable (every item failed on the platform's side)"
_BANNED: Final = "banned by Taobao (code 7)"
_LOST: Final = "the ledger is lost (LEDGER_LOST): no push until it is back"

_T = TypeVar("_T")


class Pusher(Protocol):
    """What the loop needs of ``TaobaoProjection``."""

    async def push(
        self,
        codes: Collection[str],
        *,
        parents: Mapping[str, Sequence[SpanContext]] | None = None,
        stop: asyncio.Event | None = None,
    ) -> PushReport: ...


class BanClock(Protocol):
    """What the loop needs of ``TopClient``: the shared ban's remaining time."""

    async def ban_remaining_s(self) -> float: ...


@dataclass(slots=True)
class ProjectionState(LoopHealth):
    """What readiness, metrics and operators look at (monotonic times)."""

    paused_until: float = 0.0  # waiting out a ban or an outage
    pause_reason: str = ""
    ban_until: float = 0.0  # when the Taobao ban last read from Redis ends
    pending_skus: int = 0
    oldest_pending_ms: int | None = None  # when the oldest unconfirmed change was made
    passes: int = 0
    items_pushed: int = 0
    first_pass_done: bool = False

    @property
    def paused(self) -> bool:
        return self.paused_until > time.monotonic()

    @property
    def ban_remaining_s(self) -> float:
        return max(0.0, self.ban_until - time.monotonic())

    @property
    def oldest_pending_age_s(self) -> float:
        if self.oldest_pending_ms is None:
            return 0.0
        return max(0.0, time.time() - self.oldest_pending_ms / 1000)


class ProjectionLoop:
    """Runs the loop described in the module docstring."""

    def __init__(
        self,
        *,
        projection: Pusher,
        ledger: Ledger,
        bans: BanClock,
        producer: EventProducer,
        codec: AvroCodec,
        kafka: KafkaSettings,
        sync: SyncSettings,
        state: ProjectionState | None = None,
        metrics: SyncMetrics | None = None,
        guard: LedgerGuard | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        session: Callable[[], Expiry | None] = lambda: None,
        session_warn_s: float = 3 * 86_400,
        quota: Callable[[], QuotaView] | None = None,
    ) -> None:
        self._projection = projection
        # The seller session's expiries (no I/O), warned of this long before.
        self._session = session
        self._session_warn_s = session_warn_s
        self._session_alerted: set[str] = set()
        self._quota = quota  # the daily call quota as last seen (no I/O)
        self._guard = guard or LedgerGuard()
        self._ledger = ledger
        self._bans = bans
        self._producer = producer
        self._codec = codec
        self._kafka = kafka
        self._sync = sync
        self._metrics = metrics or SyncMetrics.create()
        self._clock_ms = clock_ms
        self._links = EventLinks()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._banned = False
        self.state = state or ProjectionState()
        self._metrics.observe_projection(self.state)

    def changed(self, parents: Mapping[str, Sequence[SpanContext]]) -> None:
        """Ingest changed these SKUs (with the events' span contexts): push them soon."""
        self._links.add(parents)
        self._wake.set()

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        """Push until ``stop`` is set; the items in flight finish their calls."""
        self._stop = stop
        # The gauges are read beside the passes: a pass under a tight budget can take
        # minutes, and that is when the pending figures and the ban matter most.
        watcher = asyncio.create_task(self._watch(), name="projection gauges")
        try:
            while not stop.is_set():
                await self._turn()
        except Stopped as stopped:
            log.warning(
                "projection stopped while retrying %s; the ledger keeps it pending", stopped
            )
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _turn(self) -> None:
        self.state.progress()
        if self._guard.lost:
            # No push from a ledger that is gone: wait until ingest finds it back.
            self.state.paused_until = time.monotonic() + MAX_PAUSE_S
            self.state.pause_reason = _LOST
            await self._guard.wait_restored(self._stop, timeout_s=MAX_PAUSE_S)
            self.state.paused_until, self.state.pause_reason = 0.0, ""
            return
        try:
            await self._push_due()
        except LedgerLost as lost:
            now_ms = self._clock_ms()
            if self._guard.lose(str(lost), now_ms=now_ms):
                alert = lost_alert(str(lost), now_ms=now_ms)
                self._metrics.alerts.add(1, {"kind": alert.kind.value})
                await self._send(lambda: self._encode((), (alert,), now_ms))

    async def _push_due(self) -> None:
        await self._warn_session()
        await self._warn_quota()
        ban_s = await self._retrying("taobao-ban", self._bans.ban_remaining_s)
        await self._ban_changed(ban_s)
        if ban_s > 0:
            await self._pause(ban_s, _BANNED)
            return
        self._wake.clear()
        due = await self._retrying(
            "ledger", lambda: self._ledger.due(self._clock_ms(), self._sync.push_batch_skus)
        )
        report = await self._pass(due) if due else PushReport()
        self.state.first_pass_done = True
        if report.retry_after_s is not None:
            await self._back_off(report)
        elif not report.items and not self._stop.is_set():
            # Nothing was pushed (nothing due, or only codes another replica holds or that
            # are unknown): wait for a change rather than asking Redis again at once.
            await wait_any(self._wake, self._stop, timeout_s=self._sync.sweep_interval_s)

    async def _pass(self, due: list[str]) -> PushReport:
        started = time.monotonic()
        parents = self._links.take(due)
        report = await self._retrying(
            "taobao-push",
            lambda: self._projection.push(due, parents=parents, stop=self._stop),
        )
        await self._emit(report)
        self.state.passes += 1
        self.state.items_pushed += len(report.items)
        for item in report.items:
            self._metrics.pushes.add(1, {"outcome": item.state.value})
        self._metrics.push_passes.record(time.monotonic() - started)
        return report

    # ------------------------------------------------------------------ outputs

    async def _emit(self, report: PushReport) -> None:
        now_ms = self._clock_ms()
        alerts = alerts_for_push(report, now_ms=now_ms)
        for alert in alerts:
            self._metrics.alerts.add(1, {"kind": alert.kind.value})
        await self._send(lambda: self._encode(report.items, alerts, now_ms))

    async def _send(self, encode: Callable[[], list[Outbound]]) -> None:
        """Encode (the Schema Registry may be called: off the event loop, retried like the
        broker) and produce, waiting for the broker's acknowledgement."""

        async def encoded() -> list[Outbound]:
            if self._codec.uses_registry:
                return await asyncio.to_thread(encode)
            return encode()

        outbound = await self._retrying("encode", encoded)
        if not outbound:
            return
        await self._retrying(
            "produce",
            lambda: asyncio.to_thread(self._producer.send, outbound, timeout_s=PRODUCE_TIMEOUT_S),
        )

    def _encode(
        self, items: Sequence[ItemPush], alerts: Sequence[StockAlert], now_ms: int
    ) -> list[Outbound]:
        return [self._record(item, now_ms) for item in items] + [self._alert(a) for a in alerts]

    def _record(self, item: ItemPush, now_ms: int) -> Outbound:
        topic = self._kafka.pushes_topic
        push = push_record(item, now_ms=now_ms)
        return Outbound(
            topic,
            self._codec.encode_push(push, topic=topic),
            key=str(push.num_iid).encode(),
            # The push span's context: a consumer of push records continues its trace.
            headers=item.trace_headers,
        )

    def _alert(self, alert: StockAlert) -> Outbound:
        topic = self._kafka.alerts_topic
        key = alert.sku or (str(alert.num_iid) if alert.num_iid else alert.alert_id)
        return Outbound(topic, self._codec.encode_alert(alert, topic=topic), key=key.encode())

    async def _warn_session(self) -> None:
        """Alert (once per expiry) when the session, its write permission or its refresh
        token expires within ``TAOBAO_SESSION_WARN_S`` and nothing renews it."""
        now = datetime.fromtimestamp(self._clock_ms() / 1000, UTC)
        fresh = [
            a
            for a in session_alerts(self._session(), now=now, warn_s=self._session_warn_s)
            if a.alert_id not in self._session_alerted
        ]
        if not fresh:
            return
        for alert in fresh:
            log.warning("SESSION_EXPIRING: %s", alert.message)
            self._metrics.alerts.add(1, {"kind": alert.kind.value})
        await self._send(lambda: self._encode((), fresh, fresh[0].raised_at_ms))
        self._session_alerted.update(a.alert_id for a in fresh)

    async def _warn_quota(self) -> None:
        """Alert once a day when the daily call quota is projected to run low."""
        alert = quota_alert(self._quota(), now_ms=self._clock_ms()) if self._quota else None
        if alert is None or alert.alert_id in self._session_alerted:
            return
        self._metrics.alerts.add(1, {"kind": alert.kind.value})
        await self._send(lambda: self._encode((), (alert,), alert.raised_at_ms))
        self._session_alerted.add(alert.alert_id)

    # ------------------------------------------------------------------ waiting

    async def _back_off(self, report: PushReport) -> None:
        """After a pass that hit an app-wide condition: wait out the ban the client recorded
        (read back, so the gauges and the alert show it), our own budget, or the outage."""
        assert report.retry_after_s is not None
        if report.limited:
            ban_s = await self._retrying("taobao-ban", self._bans.ban_remaining_s)
            await self._ban_changed(ban_s)
            if ban_s > 0:
                await self._pause(ban_s, _BANNED)
                return
            await self._pause(report.retry_after_s, "over the call budget (TAOBAO_QPS)")
            return
        await self._pause(report.retry_after_s, _OUTAGE)

    async def _ban_changed(self, ban_s: float) -> None:
        self.state.ban_until = time.monotonic() + ban_s
        if ban_s > 0 and not self._banned:
            log.warning("Taobao banned the app's calls for %.0fs: pushes wait", ban_s)
            alert = ban_alert(ban_s, detected_ms=self._clock_ms())
            self._metrics.alerts.add(1, {"kind": alert.kind.value})
            await self._send(lambda: self._encode((), (alert,), alert.raised_at_ms))
        elif ban_s <= 0 and self._banned:
            log.info("the Taobao ban is over: pushing again")
            self.state.pause_reason = ""
        self._banned = ban_s > 0

    async def _pause(self, seconds: float, reason: str) -> None:
        """Wait out a ban or an outage (woken only by shutdown, never by new changes)."""
        wait_s = min(max(seconds, 0.05), MAX_PAUSE_S)
        if not self.state.paused:
            log.warning("projection paused for %.1fs: %s", seconds, reason)
        self.state.paused_until = time.monotonic() + wait_s
        self.state.pause_reason = reason
        await wait_any(self._stop, timeout_s=wait_s)
        self.state.paused_until = 0.0

    async def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                await self._refresh_gauges()
            except DependencyError as exc:
                log.debug("projection gauges not refreshed: %s", exc)  # the loop reports it
            await wait_any(self._stop, timeout_s=GAUGE_REFRESH_S)

    async def _refresh_gauges(self) -> None:
        self.state.pending_skus = await self._ledger.pending_count()
        self.state.oldest_pending_ms = await self._ledger.oldest_pending_ms()
        # Also a ban the client waits out inside a call (shorter than TAOBAO_DEADLINE_S).
        self.state.ban_until = time.monotonic() + await self._bans.ban_remaining_s()

    async def _retrying(self, step: str, action: Callable[[], Awaitable[_T]]) -> _T:
        return await retry_step(
            step,
            action,
            stop=self._stop,
            health=self.state,
            retries=self._metrics.retries,
            loop="projection",
        )
