"""The projection loop's step order, bans, outages and shutdown, with in-memory fakes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.trace import SpanContext, TraceFlags

from connector.contracts.codec import AvroCodec
from connector.contracts.records import AlertKind, PushedSku, TaobaoState
from connector.errors import DependencyError
from connector.kafka import Outbound
from connector.metrics import SyncMetrics
from connector.push.loop import ProjectionLoop
from connector.push.outcomes import ItemPush, ItemTransition, PushReport, Transition
from connector.settings import KafkaSettings, SyncSettings
from connector.taobao.budget import QuotaView
from connector.taobao.tokens import Expiry

KAFKA = KafkaSettings(bootstrap_servers="unused:9092")
CODEC = AvroCodec()


def context(n: int) -> SpanContext:
    return SpanContext(n, n, is_remote=False, trace_flags=TraceFlags(1))


class FakeLedger:
    """A pending set: ``due`` answers what is pending; a push confirms what it reports."""

    def __init__(self, *pending: str) -> None:
        self.pending = list(pending)
        self.dues = 0

    async def due(self, now_ms: int, limit: int) -> list[str]:
        self.dues += 1
        return self.pending[:limit]

    async def pending_count(self) -> int:
        return len(self.pending)

    async def oldest_pending_ms(self) -> int | None:
        return int(time.time() * 1000) - 3_000 if self.pending else None


class FakePusher:
    def __init__(self, ledger: FakeLedger) -> None:
        self.ledger = ledger
        self.calls: list[tuple[list[str], dict[str, list[SpanContext]]]] = []
        self.answers: list[PushReport | BaseException | Callable[[], PushReport]] = []

    async def push(
        self,
        codes: Collection[str],
        *,
        parents: Mapping[str, Sequence[SpanContext]] | None = None,
        stop: asyncio.Event | None = None,
    ) -> PushReport:
        self.calls.append((list(codes), {k: list(v) for k, v in (parents or {}).items()}))
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer() if callable(answer) else answer
        self.ledger.pending = [c for c in self.ledger.pending if c not in codes]
        return _synced(list(codes))


def _synced(codes: list[str]) -> PushReport:
    skus = tuple(PushedSku(c, None, 3, 1, confirmed=True) for c in codes)
    return PushReport(items=[ItemPush(600, TaobaoState.SYNCED, skus)])


class FakeBans:
    def __init__(self) -> None:
        self.until = 0.0
        self.asked = 0

    async def ban_remaining_s(self) -> float:
        self.asked += 1
        return max(0.0, self.until - time.monotonic())


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[Outbound] = []

    def send(self, messages: Sequence[Outbound], *, timeout_s: float) -> None:
        self.sent += messages


class Rig:
    def __init__(self, *pending: str, sweep_s: float = 0.05, **watch: Any) -> None:
        self.ledger = FakeLedger(*pending)
        self.pusher = FakePusher(self.ledger)
        self.bans = FakeBans()
        self.producer = FakeProducer()
        self.metrics = SyncMetrics.create()
        self.loop = ProjectionLoop(
            projection=self.pusher,
            ledger=self.ledger,  # type: ignore[arg-type]
            bans=self.bans,
            producer=self.producer,  # type: ignore[arg-type]
            codec=CODEC,
            kafka=KAFKA,
            sync=SyncSettings(sweep_interval_s=sweep_s),
            metrics=self.metrics,
            **watch,
        )
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.loop.run(self.stop))

    async def finish(self) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=5)

    def on(self, topic: str) -> list[Outbound]:
        return [m for m in self.producer.sent if m.topic == topic]


async def until(predicate: object, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_the_first_pass_pushes_what_an_earlier_run_left_pending() -> None:
    rig = Rig("A", "B")
    rig.start()
    await until(lambda: rig.pusher.calls)
    await rig.finish()

    assert rig.pusher.calls[0][0] == ["A", "B"]
    (record,) = rig.on(KAFKA.pushes_topic)
    push = CODEC.decode_push(record.value)
    assert (push.num_iid, push.outcome) == (600, TaobaoState.SYNCED)
    assert rig.loop.state.first_pass_done


async def test_a_change_wakes_the_loop_and_its_events_become_the_push_links() -> None:
    rig = Rig(sweep_s=30)  # only a change can wake it this soon
    rig.start()
    await until(lambda: rig.ledger.dues >= 1)
    rig.ledger.pending = ["A"]
    rig.loop.changed({"A": [context(7), context(8)]})
    await until(lambda: rig.pusher.calls)
    await rig.finish()

    codes, parents = rig.pusher.calls[0]
    assert codes == ["A"]
    assert [c.trace_id for c in parents["A"]] == [7, 8]


async def test_a_ban_means_no_push_until_it_ends_and_one_alert() -> None:
    rig = Rig("A")
    rig.bans.until = time.monotonic() + 0.4
    rig.start()
    await until(lambda: rig.loop.state.paused)
    assert rig.loop.state.ban_remaining_s > 0
    assert rig.pusher.calls == []  # nothing is tried while banned
    await until(lambda: rig.pusher.calls, timeout_s=3)
    await rig.finish()

    alerts = [CODEC.decode_alert(m.value) for m in rig.on(KAFKA.alerts_topic)]
    assert [a.kind for a in alerts] == [AlertKind.CALL_LIMITED]
    assert rig.bans.asked < 20  # waited, did not spin


async def test_a_ban_seen_by_a_push_pauses_the_loop_instead_of_spinning() -> None:
    rig = Rig("A")

    def code_7() -> PushReport:
        rig.bans.until = time.monotonic() + 0.3  # what the client records on code 7
        return PushReport(retry_after_s=0.3, limited=True)

    rig.pusher.answers = [code_7]
    rig.start()
    await until(lambda: rig.loop.state.paused)
    assert rig.loop.state.pause_reason.startswith("banned")
    assert rig.loop.state.ban_remaining_s > 0  # read back at once: the gauge shows it
    await until(lambda: len(rig.pusher.calls) >= 2, timeout_s=3)
    await rig.finish()

    alerts = [CODEC.decode_alert(m.value) for m in rig.on(KAFKA.alerts_topic)]
    assert [a.kind for a in alerts] == [AlertKind.CALL_LIMITED]


async def test_our_own_budget_pauses_without_a_ban() -> None:
    rig = Rig("A")
    rig.pusher.answers = [PushReport(retry_after_s=0.3, limited=True)]
    rig.start()
    await until(lambda: rig.loop.state.paused)
    assert "budget" in rig.loop.state.pause_reason
    await until(lambda: len(rig.pusher.calls) >= 2, timeout_s=3)
    await rig.finish()

    assert rig.on(KAFKA.alerts_topic) == []


async def test_an_outage_pauses_and_then_pushes_again() -> None:
    rig = Rig("A")
    rig.pusher.answers = [PushReport(retry_after_s=0.3)]
    rig.start()
    await until(lambda: rig.loop.state.paused)
    calls_while_paused = len(rig.pusher.calls)
    await until(lambda: len(rig.pusher.calls) >= 2, timeout_s=3)
    await rig.finish()

    assert calls_while_paused == 1
    assert "unavailable" in rig.loop.state.pause_reason


async def test_redis_down_during_a_push_is_retried_in_place() -> None:
    rig = Rig("A")
    rig.pusher.answers = [DependencyError("Redis unreachable")]
    rig.start()
    await until(lambda: len(rig.pusher.calls) >= 2, timeout_s=5)
    await rig.finish()

    assert rig.loop.state.failing_step is None
    assert rig.on(KAFKA.pushes_topic)


async def test_shutdown_during_a_long_pause_returns_at_once() -> None:
    rig = Rig("A")
    rig.bans.until = time.monotonic() + 3600
    rig.start()
    await until(lambda: rig.loop.state.paused)
    started = time.monotonic()
    await rig.finish()

    assert time.monotonic() - started < 1
    assert rig.pusher.calls == []


async def test_shelf_changes_and_refusals_become_alerts() -> None:
    rig = Rig("A")
    failed = ItemPush(601, TaobaoState.FAILED, (PushedSku("B", None, 0, 4),), error="isv.x")
    rig.pusher.answers = [
        PushReport(
            items=[failed],
            transitions=[ItemTransition(600, Transition.DELISTED, ("A",), 3)],
            unmapped={"C": 2},
        )
    ]
    rig.start()
    await until(lambda: len(rig.on(KAFKA.alerts_topic)) >= 3)
    await rig.finish()

    kinds = {CODEC.decode_alert(m.value).kind for m in rig.on(KAFKA.alerts_topic)}
    assert kinds == {
        AlertKind.OUT_OF_STOCK_DELISTED,
        AlertKind.TAOBAO_FAILURE,
        AlertKind.UNMAPPED_SKU,
    }


@pytest.mark.parametrize("pending", [0, 3])
async def test_gauges_show_the_pending_outbox(pending: int) -> None:
    rig = Rig(*[f"S{i}" for i in range(pending)])
    rig.pusher.answers = [PushReport()] * 1000  # nothing ever confirmed
    rig.start()
    await until(lambda: rig.ledger.dues >= 1)
    await asyncio.sleep(0.05)
    await rig.finish()

    assert rig.loop.state.pending_skus == pending
    assert (rig.loop.state.oldest_pending_age_s >= 2.5) == bool(pending)


async def test_a_session_nothing_renews_and_a_quota_running_low_are_alerted_once_each() -> None:
    soon = datetime.now(UTC) + timedelta(hours=10)
    fixed = Expiry(soon, None, None, refreshable=False, has_refresh=True)
    quota = QuotaView("20261201", 2_100, 5_000, 43_200_000)  # half the day: 4,200 projected
    rig = Rig("A", session=lambda: fixed, quota=lambda: quota)
    rig.start()
    await until(lambda: rig.ledger.dues >= 3)  # several turns
    await rig.finish()

    kinds = [CODEC.decode_alert(m.value).kind for m in rig.on(KAFKA.alerts_topic)]
    assert sorted(kinds) == [AlertKind.CALL_QUOTA_LOW, AlertKind.SESSION_EXPIRING]  # once each
