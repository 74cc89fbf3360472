"""The sync instruments of both loops, created once per meter provider.

Counters and histograms are recorded by the loops as they work; gauges are read from each
loop's state at scrape time (their callbacks do no I/O). Exported to Prometheus as
``sync_*`` and ``taobao_ban_remaining_seconds`` (see the README's metrics table).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from connector.taobao.budget import QuotaView
from connector.taobao.tokens import Expiry
from connector.telemetry import SECONDS_BUCKETS, meter

__all__ = ["BridgeMetrics", "IngestGauges", "ProjectionGauges", "SyncMetrics"]


class IngestGauges(Protocol):
    """What the ingest gauges read: consumer lag by partition."""

    @property
    def lag(self) -> dict[tuple[str, int], int]: ...


class ProjectionGauges(Protocol):
    """What the projection gauges read."""

    @property
    def pending_skus(self) -> int: ...

    @property
    def oldest_pending_age_s(self) -> float: ...

    @property
    def ban_remaining_s(self) -> float: ...

    @property
    def paused(self) -> bool: ...


def _gauge(values: Callable[[], list[Observation]]) -> Callable[[CallbackOptions], Any]:
    return lambda _: values()


@dataclass(frozen=True, slots=True)
class SyncMetrics:
    events: Any  # counter: input events by type and result status
    batches: Any  # histogram: one ingest batch, end to end
    ledger_s: Any  # histogram: one ledger round trip per batch
    dead_letters: Any  # counter by reason
    alerts: Any  # counter by kind
    retries: Any  # counter: Redis/broker steps retried, by loop and step
    pushes: Any  # counter: items pushed by the projection, by outcome
    push_passes: Any  # histogram: one projection pass
    rewinds: Any  # counter: partitions read again because the ledger was behind
    meter: Any  # for the observable gauges bound to a loop's state

    @classmethod
    def create(cls, provider: MeterProvider | None = None) -> SyncMetrics:
        m = meter(provider)

        def seconds(name: str) -> Any:
            return m.create_histogram(
                name, unit="s", explicit_bucket_boundaries_advisory=SECONDS_BUCKETS
            )

        return cls(
            meter=m,
            events=m.create_counter("sync.events", description="Input events by status"),
            batches=seconds("sync.batch.duration"),
            ledger_s=seconds("sync.ledger.duration"),
            dead_letters=m.create_counter("sync.dead_letters"),
            alerts=m.create_counter("sync.alerts"),
            retries=m.create_counter("sync.step.retries"),
            pushes=m.create_counter("sync.pushes", description="Items pushed, by outcome"),
            push_passes=seconds("sync.push.pass.duration"),
            rewinds=m.create_counter(
                "sync.ledger.rewinds",
                description="Partitions read again because Redis held less than was applied",
            ),
        )

    def observe_ledger(self, lost: Callable[[], bool]) -> None:
        self.meter.create_observable_gauge(
            "sync.ledger.lost",
            callbacks=[_gauge(lambda: [Observation(1 if lost() else 0)])],
            description="1 while the ledger's marker is missing: nothing applied or pushed",
        )

    def observe_quota(self, view: Callable[[], QuotaView]) -> None:
        """The daily call quota's gauges (absent without ``TAOBAO_DAILY_QUOTA``)."""
        m = self.meter

        def gauge(name: str, value: Callable[[QuotaView], int | None], about: str) -> None:
            def read() -> list[Observation]:
                found = value(view())
                return [] if found is None or view().limit is None else [Observation(found)]

            m.create_observable_gauge(name, callbacks=[_gauge(read)], description=about)

        gauge("taobao.quota.used", lambda q: q.used, "TOP calls today (China time), all replicas")
        gauge("taobao.quota.limit", lambda q: q.limit, "TAOBAO_DAILY_QUOTA")
        gauge("taobao.quota.projected", lambda q: q.projected, "Today's calls at the rate so far")

    def observe_session(self, expiry: Callable[[], Expiry | None]) -> None:
        """Seconds until the session, its write permission and its refresh token expire,
        where the token says (``taobao_session_expires_in_seconds{expires}``)."""

        def left() -> list[Observation]:
            found = expiry()
            if found is None:
                return []
            now = time.time()
            named = {
                "session": found.session_at,
                "write": found.write_at,
                "refresh": found.refresh_at,
            }
            return [
                Observation(max(0.0, at.timestamp() - now), {"expires": what})
                for what, at in named.items()
                if at is not None
            ]

        self.meter.create_observable_gauge(
            "taobao.session.expires_in",
            unit="s",
            callbacks=[_gauge(left)],
            description="Seconds until the seller session (or its write or refresh) expires",
        )

    def observe_ingest(self, state: IngestGauges) -> None:
        def lag() -> list[Observation]:
            return [
                Observation(n, {"topic": topic, "partition": str(partition)})
                for (topic, partition), n in state.lag.items()
            ]

        self.meter.create_observable_gauge("sync.consumer.lag", callbacks=[_gauge(lag)])

    def observe_projection(self, state: ProjectionGauges) -> None:
        m = self.meter
        m.create_observable_gauge(
            "sync.pending.skus",
            callbacks=[_gauge(lambda: [Observation(state.pending_skus)])],
            description="SKUs Taobao has not confirmed yet",
        )
        m.create_observable_gauge(
            "sync.pending.oldest_age",
            unit="s",
            callbacks=[_gauge(lambda: [Observation(state.oldest_pending_age_s)])],
            description="Age of the oldest change Taobao has not confirmed",
        )
        m.create_observable_gauge(
            "taobao.ban.remaining",
            unit="s",
            callbacks=[_gauge(lambda: [Observation(state.ban_remaining_s)])],
            description="Seconds left of a Taobao ban (code 7) on the app's calls",
        )
        m.create_observable_gauge(
            "sync.projection.paused",
            callbacks=[_gauge(lambda: [Observation(1 if state.paused else 0)])],
            description="1 while the projection waits out a ban or an outage",
        )


@dataclass(frozen=True, slots=True)
class BridgeMetrics:
    """The message-service bridge's instruments (``connector/tmc/bridge.py``)."""

    messages: Any  # counter: TMC messages consumed, by topic
    orders: Any  # counter: order events produced to the orders topic, by type
    lag_s: Any  # histogram: from the Taobao-side change to its event acknowledged
    meter: Any

    @classmethod
    def create(cls, provider: MeterProvider | None = None) -> BridgeMetrics:
        m = meter(provider)
        return cls(
            meter=m,
            messages=m.create_counter("tmc.messages", description="TMC messages consumed"),
            orders=m.create_counter(
                "tmc.order_events", description="Order events produced from Taobao's trades"
            ),
            lag_s=m.create_histogram(
                "tmc.lag",
                unit="s",
                explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
                description="From a Taobao-side order change to its event on the orders topic",
            ),
        )

    def observe(self, active: Callable[[], bool]) -> None:
        self.meter.create_observable_gauge(
            "tmc.bridge.active",
            callbacks=[_gauge(lambda: [Observation(1 if active() else 0)])],
            description="1 on the replica that holds the bridge's lease",
        )
