"""The sync job end to end: real broker, real Redis, the Taobao sandbox over HTTP.

These are the acceptance tests of DESIGN.md's guarantees: exactly-once effect under
redelivery and crashes, no forgotten push, convergence under faults, the order rules,
oversell, shelf states, poison messages and tracing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from connector.contracts.events import OrderType, WarehouseType
from connector.contracts.records import AlertKind, ResultStatus, TaobaoState
from connector.ingest import loop as ingest_loop
from connector.kafka import ensure_topics
from connector.ledger.stock import reference_apply
from connector.push.outcomes import PushReport
from connector.sandbox.server import SandboxServer
from connector.settings import KafkaSettings
from connector.telemetry import get_tracer, inject_context
from tests.helpers import api_calls, set_faults
from tests.pipeline_harness import (
    WAREHOUSE,
    Crash,
    Harness,
    converged,
    count,
    expected_targets,
    move,
    order,
    shelf,
    taobao_quantities,
    wait_for,
)

pytestmark = pytest.mark.integration

MUG, TSHIRT, SNEAKER, NOTEBOOK, HEADPHONES = (
    600000000003,
    600000000001,
    600000000002,
    600000000004,
    600000000005,
)
C, X, S = OrderType.CREATED, OrderType.CANCELLED, OrderType.SHIPPED


@pytest.fixture
def harness(kafka_settings: KafkaSettings, sandbox: SandboxServer, redis_url: str) -> Harness:
    return Harness(kafka_settings, sandbox, redis_url)


OPENING = [
    count("MUG-WHITE", 20),
    count("TSHIRT-RED-M", 10),
    count("TSHIRT-RED-L", 5),
    count("TSHIRT-BLUE-M", 4),
]
ORDERS = [
    order("o1-c", "o1", C, ("MUG-WHITE", 2), ("TSHIRT-RED-M", 1), at=10),
    order("o2-c", "o2", C, ("TSHIRT-RED-L", 2), at=20),
    order("o2-x", "o2", X, ("TSHIRT-RED-L", 2), at=30),
    order("o1-s", "o1", S, ("MUG-WHITE", 2), ("TSHIRT-RED-M", 1), at=40),
    move("rcv-1", WarehouseType.RECEIVED, "TSHIRT-BLUE-M", 6, at=50),
]
CODES = ["MUG-WHITE", "TSHIRT-RED-M", "TSHIRT-RED-L", "TSHIRT-BLUE-M"]


async def test_every_event_delivered_twice_has_one_effect(harness: Harness) -> None:
    events = OPENING + ORDERS
    harness.produce(events + events)

    async with harness.running() as connector:
        results = await harness.results(2 * len(events))
        await converged(harness, events, CODES)
        stock = await connector.ledger.stock(CODES)

    statuses = Counter(r.status for r in results)
    assert statuses == {ResultStatus.APPLIED: len(events), ResultStatus.DUPLICATE: len(events)}
    reference = reference_apply(events, default_warehouse="DEFAULT")
    for code in CODES:
        assert stock[code].available == reference.available(code)
        assert stock[code].on_hand == {WAREHOUSE: reference.total_on_hand(code)}


async def test_a_backlog_in_many_slices_has_one_effect_each_and_results_in_input_order(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny slices: every batch goes through the ledger in many overlapped calls.
    monkeypatch.setattr(ingest_loop, "SLICE_EVENTS", 7)
    events = list(OPENING)
    for i in range(60):
        code = CODES[i % len(CODES)]
        events.append(order(f"b{i}-c", f"b{i}", C, (code, 1), at=100 + 2 * i))
        if i % 3 == 0:
            events.append(order(f"b{i}-x", f"b{i}", X, (code, 1), at=101 + 2 * i))
    harness.produce(events + events[:30])

    async with harness.running() as connector:
        results = await harness.results(len(events) + 30)
        await converged(harness, events, CODES)
        stock = await connector.ledger.stock(CODES)

    statuses = Counter(r.status for r in results)
    assert statuses == {ResultStatus.APPLIED: len(events), ResultStatus.DUPLICATE: 30}
    reference = reference_apply(events, default_warehouse="DEFAULT")
    for code in CODES:
        assert stock[code].available == reference.available(code)
    # One result per input, in each input partition's order.
    seen: dict[tuple[str, int], int] = {}
    for r in results:
        where = (r.source.topic, r.source.partition)
        assert r.source.offset > seen.get(where, -1), r
        seen[where] = r.source.offset


async def test_batch_replayed_after_a_crash_before_commit(harness: Harness) -> None:
    events = OPENING + ORDERS
    harness.produce(events)

    async with harness.running() as first:
        # Every batch is processed and none committed: a crash would stop after the first
        # batch, and how the events split into batches depends on fetch timing. (The crash
        # also beats the ledger's note of the outputs produced, which runs beside the
        # commit: with that note, a partition without a committed offset resumes after it.)
        first.consumer.commit = lambda *_: None  # type: ignore[method-assign]

        async def not_recorded(*_: Any) -> None:
            return None

        first.ledger.record_reported = not_recorded  # type: ignore[method-assign]
        await harness.results(len(events))  # results were produced, offsets never committed

    # A new instance in the same group gets every event again.
    async with harness.running() as second:
        results = await harness.results(2 * len(events))
        await converged(harness, events, CODES)
        stock = await second.ledger.stock(CODES)

    replayed = results[len(events) :]
    assert {r.status for r in replayed} == {ResultStatus.DUPLICATE}
    reference = reference_apply(events, default_warehouse="DEFAULT")
    assert {c: stock[c].available for c in CODES} == {c: reference.available(c) for c in CODES}


async def test_a_crash_before_the_results_went_out_reports_the_application_on_replay(
    harness: Harness,
) -> None:
    events = [count("MUG-WHITE", 10), order("m1", "m1", C, ("MUG-WHITE", 6), at=5)]
    harness.produce(events[:1])
    async with harness.running():
        await harness.results(1)
    harness.produce(events[1:])

    async with harness.running() as first:
        # The process dies after the ledger step, before its outputs reach the broker.
        def crash(*_: Any, **__: Any) -> None:
            raise Crash

        first.producer.send = crash  # type: ignore[method-assign]
        await wait_for(lambda: _reserved(first, 6), what="the order in the ledger")

    async with harness.running():
        results = await harness.results(2)
        alerts = await harness.alerts(1)

    replayed = next(r for r in results if r.event_id == "m1")
    assert replayed.status is ResultStatus.APPLIED  # not DUPLICATE: nobody heard of it
    assert replayed.skus[0].effect == "reserved"
    assert [a.kind for a in alerts] == [AlertKind.LOW_STOCK]  # 10 - 6 = 4, threshold 5


async def _reserved(connector: Any, n: int) -> bool:
    return bool((await connector.ledger.stock(["MUG-WHITE"]))["MUG-WHITE"].reserved == n)


async def test_crash_between_ledger_and_taobao_catches_up_on_restart(
    harness: Harness, kafka_settings: KafkaSettings
) -> None:
    events = OPENING
    harness.produce(events)
    before = taobao_quantities(harness.sandbox)

    async with harness.running() as first:
        # The process "dies" after each ledger step: Taobao is never told. (A no-op rather
        # than a crash, so every event reaches the ledger however fetches split them.)
        async def never_told(*_: Any, **__: Any) -> PushReport:
            return PushReport()

        first.projection.push = never_told  # type: ignore[method-assign]
        await wait_for(
            lambda: _pending_is(first, len(CODES)), what="every SKU pending in the ledger"
        )
    assert taobao_quantities(harness.sandbox) == before  # Taobao was never told

    # Restart reading fresh, empty topics: no event (and no redelivery) arrives at all.
    quiet = kafka_settings.model_copy(
        update={
            "orders_topic": f"{kafka_settings.orders_topic}-quiet",
            "warehouse_topic": f"{kafka_settings.warehouse_topic}-quiet",
            "group_id": f"{kafka_settings.group_id}-quiet",
        }
    )
    ensure_topics(quiet, [quiet.orders_topic, quiet.warehouse_topic], partitions=1)
    async with harness.running(kafka=quiet) as second:
        await converged(harness, events, CODES)
        await wait_for(lambda: _no_pending(second), what="the pending set to empty")
        pushes = await harness.pushes(1)

    # The restart's first pass pushed what the first run left pending, and says so.
    confirmed = {s.sku: s.quantity for p in pushes for s in p.skus if s.confirmed}
    assert confirmed == expected_targets(events, CODES)
    assert {p.outcome for p in pushes} == {TaobaoState.SYNCED}


async def _no_pending(connector: Any) -> bool:
    return await _pending_is(connector, 0)


async def _pending_is(connector: Any, n: int) -> bool:
    return bool(await connector.ledger.pending_count() == n)


async def test_converges_under_dropped_responses_errors_and_bans(
    harness: Harness, sandbox: SandboxServer
) -> None:
    set_faults(
        sandbox,
        {
            "drop_after_apply_rate": 0.2,
            "error_rates": {"isp.remote-service-timeout": 0.15, "7": 0.1},
        },
    )
    codes = [*CODES, "HEADPHONES-PRE"]
    events = [
        *OPENING,
        count("HEADPHONES-PRE", 30),  # presale: only increments reach it
        *ORDERS,
        order("p1", "p1", C, ("HEADPHONES-PRE", 3), at=60),
        order("p2", "p2", C, ("HEADPHONES-PRE", 2), at=61),
        order("p1-x", "p1", X, ("HEADPHONES-PRE", 3), at=62),
        move("rcv-2", WarehouseType.RECEIVED, "HEADPHONES-PRE", 4, at=63),
    ]
    harness.produce(events)

    async with harness.running() as connector:
        await harness.results(len(events), timeout_s=60)
        await converged(harness, events, codes)
        await wait_for(lambda: _no_pending(connector), timeout_s=60, what="pending to empty")

    calls = api_calls(sandbox)
    assert any(c["fault"] == "drop_after_apply" for c in calls)
    assert any(c["code"] == 7 for c in calls)
    # 30 - 2 = 28 then +4 = 32: any increment applied twice would show here.
    assert taobao_quantities(sandbox)["HEADPHONES-PRE"] == 32


async def test_order_rules_say_what_happened(harness: Harness) -> None:
    events = [
        count("TSHIRT-RED-M", 10),
        order("late-x", "late", X, ("TSHIRT-RED-M", 2), at=10),  # cancel before create
        order("late-c", "late", C, ("TSHIRT-RED-M", 2), at=5),  # …the late create reserves 0
        order("d-c", "d", C, ("TSHIRT-RED-M", 1), at=20),
        order("d-x1", "d", X, ("TSHIRT-RED-M", 1), at=21),
        order("d-x2", "d", X, ("TSHIRT-RED-M", 1), at=22),  # double cancel (another id)
        order("s-c", "s", C, ("TSHIRT-RED-M", 3), at=30),
        order("s-s", "s", S, ("TSHIRT-RED-M", 3), at=31),
        order("s-x", "s", X, ("TSHIRT-RED-M", 3), at=32),  # cancel of a shipped order
        order("n-s", "n", S, ("TSHIRT-RED-M", 1), at=40),  # ship without a seen create
    ]
    harness.produce(events)

    async with harness.running() as connector:
        results = await harness.results(len(events))
        final = (await connector.ledger.stock(["TSHIRT-RED-M"]))["TSHIRT-RED-M"]

    effects = {r.event_id: r.skus[0].effect for r in results}
    statuses = {r.event_id: r.status for r in results}
    assert effects["late-x"] == "nothing_to_release"
    assert effects["late-c"] == "order_already_cancelled"
    assert effects["d-x1"] == "released"
    assert statuses["d-x2"] == ResultStatus.DUPLICATE  # same order + SKU + type
    assert effects["s-s"] == "shipped"
    assert effects["s-x"] == "already_shipped"
    assert effects["n-s"] == "shipped_without_reservation"
    # Two shipments left; nothing reserved or restored twice. (The ledger, not a result line:
    # the count and the orders sit on different partitions, so arrival order varies.)
    assert (final.available, final.reserved) == (10 - 3 - 1, 0)


async def test_oversell_is_alerted_and_taobao_never_goes_below_zero(
    harness: Harness, sandbox: SandboxServer
) -> None:
    events = [
        count("MUG-WHITE", 2),
        order("m1", "m1", C, ("MUG-WHITE", 1), at=1),
        order("m2", "m2", C, ("MUG-WHITE", 1), at=2),
        order("m3", "m3", C, ("MUG-WHITE", 1), at=3),
    ]
    # The stocktake lands first (orders and counts are on different partitions, so their
    # arrival order is otherwise free); which order then oversells is still up to arrival.
    harness.produce(events[:1])

    async with harness.running():
        await harness.results(1)
        harness.produce(events[1:])
        results = await harness.results(len(events))
        await wait_for(lambda: shelf(sandbox, MUG) == "instock", what="the mug to be delisted")
        alerts = await harness.alerts(2)

    # Exactly one result shows the SKU below zero.
    lines = [line for r in results for line in r.skus]
    oversold = [line for line in lines if line.available < 0]
    assert [line.available for line in oversold] == [-1]
    assert all(line.taobao_quantity is None or line.taobao_quantity >= 0 for line in lines)
    assert oversold[0].taobao_target == 0  # never below zero, whatever the ledger says
    assert min(line.available for line in lines) == -1
    kinds = Counter(a.kind for a in alerts)
    assert kinds[AlertKind.OVERSELL] == 1
    assert AlertKind.OUT_OF_STOCK_DELISTED in kinds
    assert taobao_quantities(sandbox)["MUG-WHITE"] == 0
    sent = [s.quantity for p in await harness.pushes(1) for s in p.skus if s.sku == "MUG-WHITE"]
    assert all(q is None or q >= 0 for q in sent)
    assert sent[-1] == 0


async def test_zero_delists_restock_relists_and_a_hand_delisted_item_stays_down(
    harness: Harness, sandbox: SandboxServer
) -> None:
    harness.produce([count("MUG-WHITE", 0), count("NOTEBOOK-A5", 9)])
    async with harness.running():
        results = await harness.results(2)
        await wait_for(lambda: shelf(sandbox, MUG) == "instock", what="delisting at zero")
        harness.produce([move("back-in", WarehouseType.RECEIVED, "MUG-WHITE", 7, at=5)])
        await wait_for(lambda: shelf(sandbox, MUG) == "onsale", what="relisting on restock")
        results = await harness.results(3)

        pushes = await harness.pushes(3)

    assert taobao_quantities(sandbox)["MUG-WHITE"] == 7
    notebook = next(r for r in results if r.event_id.startswith("count-NOTEBOOK")).skus[0]
    # Ingest does not wait for Taobao: the result says what Taobao must reach.
    assert (notebook.taobao_state, notebook.taobao_target) == (TaobaoState.PENDING, 9)
    (pushed,) = [p for p in pushes if p.num_iid == NOTEBOOK]
    assert pushed.outcome is TaobaoState.HAND_DELISTED
    assert pushed.shelf == ("HAND_DELISTED",)
    assert [(s.sku, s.quantity, s.confirmed) for s in pushed.skus] == [("NOTEBOOK-A5", 9, True)]
    mug = [p.shelf for p in pushes if p.num_iid == MUG]
    assert ("DELISTED",) in mug
    assert ("RELISTED",) in mug
    assert shelf(sandbox, NOTEBOOK) == "instock"  # never relisted
    assert taobao_quantities(sandbox)["NOTEBOOK-A5"] == 9  # but its stock is right


async def test_a_code_not_on_taobao_updates_the_ledger_and_says_unmapped(
    harness: Harness, sandbox: SandboxServer
) -> None:
    event = count("SOCKS-GREY", 40)  # in the warehouse, never listed on Taobao
    harness.produce([event])

    async with harness.running() as connector:
        first = (await harness.results(1))[0]
        alerts = await harness.alerts(1)  # the projection looked the code up
        harness.produce([event])  # redelivered: no push, the cached mapping still answers
        second = (await harness.results(2))[1]
        stock = (await connector.ledger.stock(["SOCKS-GREY"]))["SOCKS-GREY"]

    assert stock.available == 40
    # The first result comes before the projection looked the code up: it is pending.
    assert first.status is ResultStatus.APPLIED
    assert first.skus[0].taobao_state is TaobaoState.PENDING
    # The redelivery comes after it: the cached mapping says the code is not on Taobao.
    assert (second.status, second.skus[0].taobao_state) == (
        ResultStatus.DUPLICATE,
        TaobaoState.UNMAPPED,
    )
    assert [a.kind for a in alerts] == [AlertKind.UNMAPPED_SKU]
    assert not [c for c in api_calls(sandbox) if "quantity" in c["method"]]


async def test_poison_goes_to_the_dead_letter_topic_and_the_next_event_is_processed(
    harness: Harness, kafka_settings: KafkaSettings
) -> None:
    harness.produce([b"\x00garbage", order("o", "o", C, ("MUG-WHITE", 1)), count("MUG-WHITE", 5)])
    async with harness.running():
        results = await harness.results(3)
        dead = await harness.read(kafka_settings.dead_letter_topic, 1)

    statuses = [r.status for r in results]
    assert statuses.count(ResultStatus.REJECTED) == 1
    assert statuses.count(ResultStatus.APPLIED) == 2
    letter = dead[0]
    assert letter.value == b"\x00garbage"
    headers = dict(letter.headers)
    assert headers["dlq.reason"] == b"undecodable"
    assert headers["dlq.topic"] == kafka_settings.orders_topic.encode()


async def test_a_poison_message_too_big_to_copy_whole_is_dead_lettered_cut(
    harness: Harness, kafka_settings: KafkaSettings
) -> None:
    huge = b"\x00" + bytes(range(256)) * 3000  # ~750 KiB: the broker took it, undecodable
    harness.produce([huge, count("MUG-WHITE", 5)])
    async with harness.running():
        results = await harness.results(2)
        (letter,) = await harness.read(kafka_settings.dead_letter_topic, 1)

    assert {r.status for r in results} == {ResultStatus.REJECTED, ResultStatus.APPLIED}
    headers = dict(letter.headers)
    assert headers["dlq.truncated_from"] == str(len(huge)).encode()
    assert letter.value == huge[: 512 * 1024]
    assert headers["dlq.offset"] == b"0"


async def test_one_trace_per_event_parented_to_the_producer(harness: Harness) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = get_tracer(provider)
    with tracer.start_as_current_span("upstream order service", kind=SpanKind.PRODUCER) as up:
        headers = inject_context(up)
        upstream = up.get_span_context()
    harness.produce([count("MUG-WHITE", 3, at=1)], headers=headers)
    harness.produce([count("TSHIRT-RED-M", 3, at=1)])  # no trace context: a new trace

    async with harness.running(tracer=tracer):
        results = await harness.read(harness.kafka.results_topic, 2)

    finished = spans.get_finished_spans()
    process = [s for s in finished if s.name.endswith(" process")]
    assert len(process) == 2
    traced = next(s for s in process if s.context.trace_id == upstream.trace_id)
    assert traced.parent is not None
    assert traced.parent.span_id == upstream.span_id
    untraced = next(s for s in process if s is not traced)
    assert untraced.context.trace_id != upstream.trace_id
    in_trace = {s.name for s in finished if s.context.trace_id == upstream.trace_id}
    assert {"ledger apply", "taobao push item", "taobao taobao.item.quantity.update"} <= in_trace
    result_headers = dict(next(m.headers for m in results if m.key == b"count-MUG-WHITE-1"))
    assert f"{upstream.trace_id:032x}".encode() in result_headers["traceparent"]
    provider.shutdown()
