"""The ingest loop's step order and failure paths, with in-memory fakes of its I/O.

The real consumer, producer, ledger and mapping cache are replaced by fakes that write
every call into one journal, so a test can read the order of the steps and check that a
failure at any step commits nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from opentelemetry.trace import SpanContext

from connector.contracts.codec import AvroCodec
from connector.contracts.events import OrderEvent, OrderLine, OrderType, StockEvent
from connector.contracts.records import ResultStatus, TaobaoState
from connector.errors import BrokerRefused, DependencyError
from connector.ingest.loop import SLICE_EVENTS, IngestLoop
from connector.kafka import Inbound, Outbound
from connector.ledger.ledger import Application
from connector.ledger.outcomes import Effect, EventOutcome, LineOutcome, TaobaoView
from connector.metrics import SyncMetrics
from connector.retrying import Stopped
from connector.settings import KafkaSettings, SyncSettings

KAFKA = KafkaSettings(bootstrap_servers="unused:9092")
CODEC = AvroCodec()


def order(event_id: str, sku: str = "A", qty: int = 1) -> OrderEvent:
    return OrderEvent(event_id, event_id, "web", "s", OrderType.CREATED, (OrderLine(sku, qty),), 1)


def inbound(event: OrderEvent | bytes, offset: int) -> Inbound:
    value = event if isinstance(event, bytes) else CODEC.encode_order(event, topic="orders")
    return Inbound(KAFKA.orders_topic, 0, offset, b"k", value, (), None)


class Journal(list[str]):
    """Every step of every fake, in order; ``fail`` makes a named step raise."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: dict[str, list[BaseException]] = {}

    def step(self, name: str) -> None:
        self.append(name)
        errors = self.fail.get(name)
        if errors:
            raise errors.pop(0)


class FakeConsumer:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.committed: list[int] = []

    def commit(self, batch: Sequence[Inbound]) -> None:
        self.journal.step("commit")
        self.committed += [m.offset for m in batch]


class FakeProducer:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.sent: list[Outbound] = []

    def start(self) -> FakeDelivery:
        return FakeDelivery(self)

    def send(self, messages: Sequence[Outbound], *, timeout_s: float) -> None:
        self.journal.step("produce")
        self.sent += messages


class FakeDelivery:
    """Queued outputs count as sent once the wait for their acknowledgement succeeds."""

    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer
        self.queued: list[Outbound] = []

    def add(self, messages: Sequence[Outbound]) -> None:
        if messages:
            self.producer.journal.append("queued")
        self.queued += messages

    def wait(self, *, timeout_s: float) -> None:
        self.producer.journal.step("produce")
        self.producer.sent += self.queued


class FakeLedger:
    def __init__(self, journal: Journal, *, duplicate: bool = False) -> None:
        self.journal = journal
        self.duplicate = duplicate
        self.applied: list[tuple[str, list[str]]] = []  # (attempt, event ids)
        self.busy = False
        self.delay = 0.0  # how long a call is in flight
        self.companions: list[list[str]] = []  # per call: the ids it was given
        self.reported: list[str] = []  # the event ids of the attempts marked
        self.positions: list[dict[tuple[str, int], int]] = []  # per call
        self.reported_positions: list[dict[tuple[str, int], int]] = []  # per batch

    async def apply_viewing(
        self,
        events: Sequence[StockEvent],
        *,
        companions: Sequence[str] = (),
        positions: Mapping[tuple[str, int], int] | None = None,
    ) -> Application:
        self.companions.append(list(companions))
        self.positions.append(dict(positions or {}))
        assert not self.busy, "ledger calls must not overlap"
        self.busy = True
        try:
            await asyncio.sleep(self.delay)  # in flight: the loop goes on meanwhile
        finally:
            self.busy = False
        self.journal.step("ledger.apply")
        line = LineOutcome("A", Effect.RESERVED, self.duplicate, 4, 1, 5, 2, False)
        attempt = f"attempt-{len(self.applied)}"
        self.applied.append((attempt, [e.event_id for e in events]))
        # Taobao confirmed version 1 (quantity 5): where it stood when the ledger applied.
        outcomes = [EventOutcome(e.event_id, (line,)) for e in events]
        return Application(outcomes, {"A": TaobaoView(1, "SYNCED", 5)}, attempt)

    async def record_reported(self, positions: Mapping[tuple[str, int], int]) -> None:
        self.reported_positions.append(dict(positions))

    async def mark_reported(self, attempt: str) -> None:
        self.journal.step("ledger.mark_reported")
        self.reported += dict(self.applied)[attempt]


class FakeMapping:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def known_unmapped(self, codes: Sequence[str]) -> set[str]:
        self.journal.step("mapping")
        return set()


class Rig:
    def __init__(self, *, duplicate: bool = False) -> None:
        self.journal = Journal()
        self.consumer = FakeConsumer(self.journal)
        self.producer = FakeProducer(self.journal)
        self.ledger = FakeLedger(self.journal, duplicate=duplicate)
        self.changed: list[Mapping[str, Sequence[SpanContext]]] = []
        self.stop = asyncio.Event()
        self.loop = IngestLoop(
            consumer=self.consumer,  # type: ignore[arg-type]
            producer=self.producer,  # type: ignore[arg-type]
            codec=CODEC,
            ledger=self.ledger,  # type: ignore[arg-type]
            mapping=FakeMapping(self.journal),  # type: ignore[arg-type]
            kafka=KAFKA,
            sync=SyncSettings(),
            on_changed=self._changed,
            metrics=SyncMetrics.create(),
        )
        self.loop._stop = self.stop  # what run() sets: process() is driven directly here

    def _changed(self, parents: Mapping[str, Sequence[SpanContext]]) -> None:
        self.journal.append("changed")
        self.changed.append(parents)

    def results(self) -> list[Any]:
        return [
            CODEC.decode_result(m.value)
            for m in self.producer.sent
            if m.topic == KAFKA.results_topic
        ]


async def test_the_steps_run_in_order_and_never_wait_for_taobao() -> None:
    rig = Rig()

    await rig.loop.process([inbound(order("e1"), 0), inbound(order("e2"), 1)])

    assert rig.journal == [
        "ledger.apply",
        "changed",  # the projection is told right after the ledger step
        "mapping",
        "queued",  # the outputs go to the producer...
        "produce",  # ... and are all acknowledged before anything is marked or committed
        "ledger.mark_reported",
        "commit",
    ]
    assert rig.consumer.committed == [0, 1]
    assert rig.ledger.reported == ["e1", "e2"]
    # Where the ledger's positions and its outputs stand, with the effects and after them.
    assert rig.ledger.positions == [{(KAFKA.orders_topic, 0): 1}]
    assert rig.ledger.reported_positions == [{(KAFKA.orders_topic, 0): 1}]
    assert list(rig.changed[0]) == ["A"]
    assert len(rig.changed[0]["A"]) == 2  # both events' span contexts, for the push's links
    (first, _) = rig.results()
    assert first.status is ResultStatus.APPLIED
    # Taobao confirmed version 1; this event made version 2: the push is still to come.
    assert first.skus[0].taobao_state is TaobaoState.PENDING
    assert (first.skus[0].taobao_target, first.skus[0].taobao_version) == (4, 1)


async def test_a_large_batch_goes_through_the_ledger_in_slices_one_call_at_a_time() -> None:
    rig = Rig()
    n = 2 * SLICE_EVENTS + 1
    batch = [inbound(order(f"e{i}"), i) for i in range(n)]

    await rig.loop.process(batch)

    # Three ledger calls in input order (the fake refuses overlapping ones); the outputs
    # are queued once the last one succeeded, the projection woken once; one wait for all
    # of them, then the marks.
    assert [ids[0] for _, ids in rig.ledger.applied] == ["e0", f"e{SLICE_EVENTS}", f"e{n - 1}"]
    # Each call is told the batch's earlier calls: their outputs go out together.
    ids = [attempt for attempt, _ in rig.ledger.applied]
    assert rig.ledger.companions == [[], ids[:1], ids[:2]]
    assert rig.journal.count("ledger.apply") == 3
    last_call = max(i for i, step in enumerate(rig.journal) if step == "ledger.apply")
    assert rig.journal.index("queued") > last_call
    assert rig.journal.count("changed") == 1
    assert len(rig.changed[0]["A"]) == n
    produced = rig.journal.index("produce")
    assert rig.journal.count("produce") == 1
    assert produced > max(i for i, step in enumerate(rig.journal) if step == "queued")
    assert rig.journal.count("ledger.mark_reported") == 3
    assert min(i for i, step in enumerate(rig.journal) if step == "ledger.mark_reported") > produced
    assert rig.ledger.reported == [f"e{i}" for i in range(n)]
    assert [r.event_id for r in rig.results()] == [f"e{i}" for i in range(n)]
    assert rig.consumer.committed == list(range(n))


async def test_a_ledger_failure_in_a_later_slice_commits_nothing_and_leaves_no_call_behind() -> (
    None
):
    rig = Rig()
    batch = [inbound(order(f"e{i}"), i) for i in range(2 * SLICE_EVENTS)]
    calls = 0
    real = rig.ledger.apply_viewing

    async def second_call_refused(
        events: Sequence[StockEvent], *, companions: Sequence[str] = (), **kwargs: Any
    ) -> Application:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise BrokerRefused("refused")
        return await real(events, companions=companions, **kwargs)

    rig.ledger.apply_viewing = second_call_refused  # type: ignore[method-assign]

    with pytest.raises(BrokerRefused):
        await rig.loop.process(batch)

    # Nothing of the batch went to the broker: its outputs wait for every ledger call.
    assert "queued" not in rig.journal
    assert "produce" not in rig.journal
    assert "ledger.mark_reported" not in rig.journal
    assert rig.consumer.committed == []
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


async def test_a_failure_while_a_ledger_call_is_in_flight_cancels_it() -> None:
    rig = Rig()
    # Emitting slice 1 fails for good while slice 2's ledger call is under way.
    rig.journal.fail["mapping"] = [BrokerRefused("refused")]
    rig.ledger.delay = 0.05
    batch = [inbound(order(f"e{i}"), i) for i in range(2 * SLICE_EVENTS)]

    with pytest.raises(BrokerRefused):
        await rig.loop.process(batch)

    assert rig.journal.count("ledger.apply") == 1  # the second call was cut off
    assert "changed" not in rig.journal
    assert "queued" not in rig.journal
    assert rig.consumer.committed == []
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert pending == []


async def test_a_duplicate_tells_the_projection_nothing_and_is_not_marked_again() -> None:
    rig = Rig(duplicate=True)

    await rig.loop.process([inbound(order("e1"), 0)])

    assert rig.changed == [{}]
    assert rig.ledger.reported == []
    assert [r.status for r in rig.results()] == [ResultStatus.DUPLICATE]
    assert rig.consumer.committed == [0]


async def test_bad_input_is_dead_lettered_with_a_result_and_an_alert() -> None:
    rig = Rig()

    await rig.loop.process([inbound(b"\x00garbage", 0), inbound(order("e1"), 1)])

    topics = [m.topic for m in rig.producer.sent]
    assert topics.count(KAFKA.dead_letter_topic) == 1
    assert topics.count(KAFKA.alerts_topic) == 1
    assert [r.status for r in rig.results()] == [ResultStatus.REJECTED, ResultStatus.APPLIED]
    assert rig.consumer.committed == [0, 1]


@pytest.mark.parametrize("step", ["ledger.apply", "mapping", "produce"])
async def test_a_dependency_failure_is_retried_in_place_then_committed(step: str) -> None:
    rig = Rig()
    rig.journal.fail[step] = [DependencyError(f"{step} down")]

    await rig.loop.process([inbound(order("e1"), 0)])

    assert rig.journal.count(step) == 2
    assert rig.journal[-1] == "commit"
    assert rig.consumer.committed == [0]
    assert rig.loop.state.failing_step is None


@pytest.mark.parametrize("step", ["ledger.apply", "mapping", "produce"])
async def test_a_failure_no_retry_cures_commits_nothing(step: str) -> None:
    rig = Rig()
    rig.journal.fail[step] = [BrokerRefused(f"{step} refused")]

    with pytest.raises(BrokerRefused):
        await rig.loop.process([inbound(order("e1"), 0)])

    assert "commit" not in rig.journal
    assert rig.consumer.committed == []


async def test_the_commit_and_the_reported_mark_wait_for_the_outputs_not_for_each_other() -> None:
    rig = Rig()
    rig.journal.fail["ledger.mark_reported"] = [BrokerRefused("refused")]

    with pytest.raises(BrokerRefused):
        await rig.loop.process([inbound(order("e1"), 0)])

    # Both after the outputs' acknowledgement; a failing mark does not hold the commit
    # (the outputs went out: a redelivery would only be reported as the application again).
    produced = rig.journal.index("produce")
    assert rig.journal.index("ledger.mark_reported") > produced
    assert rig.journal.index("commit") > produced


async def test_shutdown_while_retrying_leaves_the_batch_uncommitted() -> None:
    rig = Rig()
    rig.journal.fail["produce"] = [DependencyError("broker down")] * 50
    asyncio.get_running_loop().call_later(0.05, rig.stop.set)

    with pytest.raises(Stopped):
        await asyncio.wait_for(rig.loop.process([inbound(order("e1"), 0)]), timeout=5)

    assert "produce" in rig.journal
    assert "ledger.mark_reported" not in rig.journal
    assert rig.consumer.committed == []
