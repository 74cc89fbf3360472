"""The Redis ledger (``connector.ledger.ledger``) against a real server, and its agreement with the
reference model (``connector.ledger.stock``) for any arrival order and any redelivery."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from redis.asyncio import Redis

from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    StockEvent,
    WarehouseEvent,
    WarehouseType,
    line_key,
)
from connector.errors import DependencyError
from connector.keys import Keys
from connector.ledger.ledger import MARK_MARGIN_S, Ledger
from connector.ledger.outcomes import Effect, EventOutcome, LineOutcome, TaobaoView
from connector.ledger.stock import reference_apply
from connector.settings import SyncSettings
from tests.unit.ledger.test_stock import ADJ, DMG, RECV, TAKE, W1, W2, C, R, S, X, order, wh

pytestmark = pytest.mark.integration

TTL_S = 3600


@pytest.fixture(autouse=True)
async def marker(redis: Redis, keys: Keys) -> None:
    """Every ledger here starts as a connector's would: with its marker created."""
    await redis.hset(keys.marker, "id", "test")


@pytest.fixture
def ledger(redis: Redis, keys: Keys) -> Ledger:
    # A clock at 0: a changed SKU is due at 0, which keeps due() calls below simple.
    return Ledger(redis, keys, dedupe_ttl_s=TTL_S, default_warehouse=W1, clock_ms=lambda: 0)


def effects(outcomes: Sequence[EventOutcome]) -> list[str]:
    """One word per line: the effect, prefixed with ``dup:`` for a duplicate."""
    return [
        f"{'dup:' if line.duplicate else ''}{line.effect.value}"
        for outcome in outcomes
        for line in outcome.lines
    ]


async def assert_matches_reference(ledger: Ledger, events: Sequence[StockEvent]) -> None:
    """The ledger's on-hand per warehouse and reserved equal the reference model's."""
    expected = reference_apply(events, default_warehouse=W1)
    skus = {sku for sku, _ in expected.on_hand} | set(expected.reserved)
    stock = await ledger.stock(skus)
    for sku in skus:
        want = {w: n for (s, w), n in expected.on_hand.items() if s == sku and n}
        assert {w: n for w, n in stock[sku].on_hand.items() if n} == want, sku
        assert stock[sku].reserved == expected.reserved[sku], sku
        assert stock[sku].available == expected.available(sku), sku


# ------------------------------------------------------------------ scenarios

# (id, events in ARRIVAL order, expected effect of each line in that order)
SCENARIOS: list[tuple[str, list[StockEvent], list[str]]] = [
    (
        "cancel before create",
        [order(X, "o1", 2, ("A", 3)), order(C, "o1", 1, ("A", 3))],
        ["nothing_to_release", "order_already_cancelled"],
    ),
    (
        "double cancel",
        [
            order(C, "o1", 1, ("A", 3)),
            order(X, "o1", 2, ("A", 3)),
            order(X, "o1", 2, ("A", 3)),
            order(X, "o1", 3, ("A", 3), eid="o1-cancel-again"),
        ],
        ["reserved", "released", "dup:released", "dup:released"],
    ),
    (
        "cancel of a shipped order",
        [
            wh(RECV, "A", 10, 0),
            order(C, "o1", 1, ("A", 3)),
            order(S, "o1", 2, ("A", 3)),
            order(X, "o1", 3, ("A", 3)),
        ],
        ["on_hand_changed", "reserved", "shipped", "already_shipped"],
    ),
    (
        "ship without a seen create",
        [wh(RECV, "A", 10, 0), order(S, "o1", 2, ("A", 2)), order(C, "o1", 1, ("A", 2))],
        ["on_hand_changed", "shipped_without_reservation", "order_already_shipped"],
    ),
    (
        "ship after cancel",
        [order(C, "o1", 1, ("A", 3)), order(X, "o1", 2, ("A", 3)), order(S, "o1", 3, ("A", 3))],
        ["reserved", "released", "shipped_without_reservation"],
    ),
    (
        "partial shipment closes the line",
        [order(C, "o1", 1, ("A", 5)), order(S, "o1", 2, ("A", 3, W2))],
        ["reserved", "shipped"],
    ),
    (
        "refund",
        [order(C, "o1", 1, ("A", 3)), order(R, "o1", 2, ("A", 3)), order(R, "o1", 2, ("A", 3))],
        ["reserved", "no_stock_change", "dup:no_stock_change"],
    ),
    (
        "stocktake with earlier and later movements",
        [
            wh(RECV, "A", 10, 1),
            wh(DMG, "A", 2, 5),
            wh(TAKE, "A", 6, 3),
            wh(RECV, "A", 4, 3),  # at T: counted already
            wh(ADJ, "A", -1, 2),  # before T: counted already
        ],
        [
            "on_hand_changed",
            "on_hand_changed",
            "stocktake_applied",
            "superseded_by_stocktake",
            "superseded_by_stocktake",
        ],
    ),
    (
        "a later stocktake, then an older one",
        [wh(TAKE, "A", 9, 7), wh(TAKE, "A", 6, 3), wh(RECV, "A", 1, 5), wh(RECV, "A", 2, 8)],
        [
            "stocktake_applied",
            "superseded_by_stocktake",
            "superseded_by_stocktake",
            "on_hand_changed",
        ],
    ),
    (
        "stocktakes at the same instant, greater id first",
        [wh(TAKE, "A", 8, 3, eid="st-b"), wh(TAKE, "A", 5, 3, eid="st-a")],
        ["stocktake_applied", "superseded_by_stocktake"],
    ),
    (
        "stocktakes at the same instant, greater id last",
        [wh(TAKE, "A", 5, 3, eid="st-a"), wh(TAKE, "A", 8, 3, eid="st-b")],
        ["stocktake_applied", "stocktake_applied"],
    ),
    (
        "a late shipment older than the stocktake still releases",
        [order(C, "o1", 1, ("A", 3)), wh(TAKE, "A", 10, 5), order(S, "o1", 2, ("A", 3))],
        ["reserved", "stocktake_applied", "superseded_by_stocktake"],
    ),
    (
        "oversell",
        [wh(RECV, "A", 2, 1), order(C, "o1", 2, ("A", 5))],
        ["on_hand_changed", "reserved"],
    ),
]


@pytest.mark.parametrize(
    ("events", "expected"), [pytest.param(e, x, id=name) for name, e, x in SCENARIOS]
)
async def test_scenario_one_event_at_a_time(
    ledger: Ledger, events: list[StockEvent], expected: list[str]
) -> None:
    outcomes = [outcome for event in events for outcome in await ledger.apply([event])]
    assert effects(outcomes) == expected
    await assert_matches_reference(ledger, events)


@pytest.mark.parametrize(
    ("events", "expected"), [pytest.param(e, x, id=name) for name, e, x in SCENARIOS]
)
async def test_scenario_in_one_batch_then_redelivered(
    ledger: Ledger, events: list[StockEvent], expected: list[str]
) -> None:
    application = await ledger.apply_viewing(events)
    assert effects(application.outcomes) == expected
    await ledger.mark_reported(application.attempt)  # the results went out
    redelivered = await ledger.apply(events)
    assert all(outcome.duplicate for outcome in redelivered)
    # A duplicate reports the effect its first delivery had.
    assert [e.removeprefix("dup:") for e in effects(redelivered)] == [
        e.removeprefix("dup:") for e in expected
    ]
    await assert_matches_reference(ledger, events)


async def test_outcome_figures_and_oversold_flag(ledger: Ledger) -> None:
    received, created, more, cancelled, restock = await ledger.apply(
        [
            wh(RECV, "A", 2, 1),
            order(C, "o1", 2, ("A", 5), ("B", 1)),
            order(C, "o2", 3, ("A", 1)),
            order(X, "o2", 4, ("A", 1)),
            wh(RECV, "A", 1, 5),
        ]
    )
    assert received.lines == (LineOutcome("A", Effect.ON_HAND_CHANGED, False, 2, 0, 2, 1, False),)
    assert created.lines == (
        LineOutcome("A", Effect.RESERVED, False, -3, 5, 2, 2, True),
        LineOutcome("B", Effect.RESERVED, False, -1, 1, 0, 1, True),
    )
    assert more.lines[0].oversold  # deeper below zero
    assert not cancelled.lines[0].oversold  # availability went up
    assert (restock.lines[0].available, restock.lines[0].oversold) == (-2, False)


async def test_stock_reports_unknown_skus_as_zero(ledger: Ledger) -> None:
    await ledger.apply([wh(RECV, "A", 4, 1, W2), order(C, "o1", 1, ("A", 1))])
    stock = await ledger.stock(["A", "nope"])
    assert stock["A"].on_hand == {W2: 4}
    assert (stock["A"].reserved, stock["A"].available, stock["A"].version) == (1, 3, 2)
    assert stock["nope"].on_hand == {}
    assert (stock["nope"].available, stock["nope"].version, stock["nope"].pushed) == (0, 0, 0)


async def test_iter_skus_lists_every_sku_with_stock(ledger: Ledger) -> None:
    events: list[StockEvent] = [wh(RECV, f"S{i}", 1, 1) for i in range(1200)]
    await ledger.apply(events)
    await ledger.apply([order(R, "o1", 1, ("untouched", 1))])  # no stock change: not indexed
    assert {sku async for sku in ledger.iter_skus()} == {f"S{i}" for i in range(1200)}


async def test_unicode_codes_round_trip(ledger: Ledger) -> None:
    sku, warehouse = "杯子-红/大", "上海仓"
    await ledger.apply([wh(RECV, sku, 5, 1, warehouse), order(C, "订单1", 2, (sku, 2))])
    assert (await ledger.stock([sku]))[sku].on_hand == {warehouse: 5}
    assert [s async for s in ledger.iter_skus()] == [sku]
    assert await ledger.due(0, 10) == [sku]


async def test_order_state_still_blocks_a_redelivery_without_its_dedupe_value(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    created, shipped = order(C, "o1", 1, ("A", 2)), order(S, "o1", 2, ("A", 1))
    await ledger.apply([wh(RECV, "A", 5, 0), created, shipped])
    # As a ledger that kept order lines' de-dup values in keys of their own left it, once
    # those expired: the lines' state alone.
    await redis.hdel(keys.order("o1"), "seen:created:A", "seen:shipped:A")
    again = await ledger.apply([shipped, created])
    assert effects(again) == ["dup:shipped", "order_already_shipped"]
    stock = (await ledger.stock(["A"]))["A"]
    assert (stock.on_hand, stock.reserved) == ({W1: 4}, 0)


async def test_event_without_lines_is_a_no_op(ledger: Ledger) -> None:
    empty = OrderEvent("e1", "o1", "web", "shop", OrderType.CREATED, (), 1)
    assert await ledger.apply([empty]) == [EventOutcome("e1", ())]


# ------------------------------------------------------------------ version and outbox


async def test_a_change_bumps_the_version_and_marks_the_sku_due(ledger: Ledger) -> None:
    await ledger.apply([wh(RECV, "A", 3, 1), order(C, "o1", 2, ("A", 1))])
    assert (await ledger.stock(["A"]))["A"].version == 2
    assert await ledger.due(now_ms=0, limit=10) == ["A"]
    assert await ledger.pending_count() == 1


async def test_no_stock_change_no_version_no_push(ledger: Ledger) -> None:
    await ledger.apply([order(R, "o1", 1, ("A", 1)), order(X, "o2", 1, ("A", 1))])
    assert (await ledger.stock(["A"]))["A"].version == 0
    assert await ledger.pending_count() == 0


async def test_confirm_with_an_older_version_keeps_the_sku_pending(ledger: Ledger) -> None:
    await ledger.apply([wh(RECV, "A", 3, 1), wh(RECV, "A", 3, 2)])  # version 2
    await ledger.confirm({"A": 1})
    assert await ledger.due(0, 10) == ["A"]
    assert (await ledger.stock(["A"]))["A"].pushed == 1
    await ledger.confirm({"A": 2})
    assert await ledger.pending_count() == 0
    await ledger.confirm({"A": 1})  # a late, older confirmation never lowers pushed
    assert (await ledger.stock(["A"]))["A"].pushed == 2


async def test_confirm_of_an_unknown_sku_does_not_invent_it(ledger: Ledger) -> None:
    await ledger.confirm({"ghost": 3})
    assert (await ledger.stock(["ghost"]))["ghost"].pushed == 0
    assert [sku async for sku in ledger.iter_skus()] == []


async def test_duplicate_after_a_crash_still_leaves_the_sku_pending(ledger: Ledger) -> None:
    event = wh(RECV, "A", 3, 1)
    await ledger.apply([event])
    # The process died before pushing: the redelivery is a duplicate and changes nothing...
    (again,) = await ledger.apply([event])
    assert again.lines[0].duplicate
    assert (again.lines[0].version, again.lines[0].on_hand) == (1, 3)
    # ...but the SKU is still due, so the next push brings Taobao up to date.
    assert await ledger.due(0, 10) == ["A"]
    await ledger.confirm({"A": again.lines[0].version})
    assert await ledger.pending_count() == 0


async def test_a_redelivery_before_the_outputs_went_out_is_reported_as_the_application(
    ledger: Ledger,
) -> None:
    created = order(C, "o1", 1, ("A", 2), ("B", 1))
    stocktake = wh(TAKE, "A", 1, 0)
    # Two copies in one call: the second is a plain duplicate of the first.
    first = await ledger.apply_viewing([stocktake, created, created])
    assert [o.duplicate for o in first.outcomes] == [False, False, True]

    # Another attempt before the outputs were marked produced (a crash, a lost reply): the
    # application is reported again, with its effects and its oversell, changing nothing.
    second = await ledger.apply_viewing([stocktake, created])
    again = second.outcomes
    assert [o.duplicate for o in again] == [False, False]
    assert all(line.duplicate and line.unreported for o in again for line in o.lines)
    assert effects(again) == ["dup:stocktake_applied", "dup:reserved", "dup:reserved"]
    assert again[1].lines[0].oversold  # 1 counted, 2 reserved: the alert is raised again
    stock = await ledger.stock(["A", "B"])
    assert (stock["A"].reserved, stock["B"].reserved) == (2, 1)

    # The second attempt took the applications over: marking the first one's outputs does
    # not vouch for them any more; marking the second's does.
    await ledger.mark_reported(first.attempt)
    assert all(o.lines[0].unreported for o in await ledger.apply([stocktake, created]))
    third = await ledger.apply_viewing([stocktake, created])
    await ledger.mark_reported(third.attempt)
    after = await ledger.apply([stocktake, created])
    assert [o.duplicate for o in after] == [True, True]
    assert not any(line.unreported for o in after for line in o.lines)


async def test_an_order_lines_dedupe_value_lives_in_its_orders_hash(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    application = await ledger.apply_viewing([order(C, "o1", 1, ("A", 2))])
    value = await redis.hget(keys.order("o1"), "seen:created:A")
    assert value == f"reserved!?{application.attempt}:-2:2:0:1".encode()  # oversold
    assert not await redis.exists(keys.seen(line_key("o1", "A", C)))


@pytest.mark.parametrize(
    ("state", "legacy_seen", "event", "effect"),
    [
        ("reserved", "reserved", order(C, "o1", 1, ("A", 2)), "dup:reserved"),
        ("cancelled", "released", order(X, "o1", 2, ("A", 2)), "dup:released"),
        ("cancelled", "reserved", order(C, "o1", 1, ("A", 2)), "dup:reserved"),
    ],
)
async def test_an_order_hash_from_the_earlier_layout_still_finds_its_lines_dedupe_keys(
    ledger: Ledger,
    redis: Redis,
    keys: Keys,
    state: str,
    legacy_seen: str,
    event: OrderEvent,
    effect: str,
) -> None:
    # As the ledger that kept order lines' de-dup values in keys of their own left it.
    await redis.hset(
        keys.order("o1"),
        mapping={"state:A": state, "reserved:A": 2 if state == "reserved" else 0, "open": 0},
    )
    await redis.set(keys.seen(line_key("o1", "A", event.type)), legacy_seen)

    (again,) = await ledger.apply([event])

    assert again.duplicate
    assert effects([again]) == [effect]
    assert (await ledger.stock(["A"]))["A"].version == 0
    # A hash the current layout created never looks for the old keys.
    (new,) = await ledger.apply([order(C, "o2", 3, ("A", 1))])
    await redis.set(keys.seen(line_key("o2", "A", X)), "released")
    (cancel,) = await ledger.apply([order(X, "o2", 4, ("A", 1))])
    assert effects([new, cancel]) == ["reserved", "released"]
    assert await redis.hget(keys.order("o2"), "layout") == b"2"


async def test_the_reported_mark_outlives_the_dedupe_ttl_by_the_clock_margin(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    application = await ledger.apply_viewing([wh(RECV, "A", 1, 1, eid="w1")])
    await ledger.mark_reported(application.attempt)
    assert await redis.ttl(keys.reported(application.attempt)) > TTL_S + MARK_MARGIN_S - 10


async def test_a_copy_in_a_later_slice_of_the_same_batch_is_a_plain_duplicate(
    ledger: Ledger,
) -> None:
    created = order(C, "o1", 1, ("A", 2))
    first = await ledger.apply_viewing([created])
    # The next slice of the same batch: the first call's outputs go out with its own.
    (copy,) = (await ledger.apply_viewing([created], companions=[first.attempt])).outcomes
    assert copy.duplicate
    assert not copy.lines[0].unreported
    # Another batch (a redelivery before the first was marked) reports it again.
    (replay,) = await ledger.apply([created])
    assert replay.lines[0].unreported


async def test_an_unmarked_application_older_than_the_dedupe_ttl_is_a_plain_duplicate(
    redis: Redis, keys: Keys
) -> None:
    # Its mark, if it was ever written, may have expired: the ledger cannot tell, so it
    # does not report the application a second time.
    now = [1_000_000]
    ledger = Ledger(redis, keys, dedupe_ttl_s=60, default_warehouse=W1, clock_ms=lambda: now[0])
    created = order(C, "o1", 1, ("A", 2))
    await ledger.apply([created])
    now[0] += 59_000
    assert (await ledger.apply([created]))[0].lines[0].unreported  # re-stamped at +59 s
    now[0] += 59_000
    assert (await ledger.apply([created]))[0].lines[0].unreported
    now[0] += 60_000
    (late,) = await ledger.apply([created])
    assert late.duplicate
    assert not late.lines[0].unreported


async def test_a_retried_call_reports_each_application_once_with_its_figures(
    ledger: Ledger,
) -> None:
    events: list[StockEvent] = [
        wh(TAKE, "A", 10, 0),
        order(C, "o1", 1, ("A", 6)),
        order(C, "o1", 1, ("A", 6)),  # the same event again, in the same batch
        order(X, "o1", 2, ("A", 6)),
        order(X, "o1", 3, ("A", 6), eid="o1-cancel-again"),  # a double cancel, another id
        wh(RECV, "A", 20, 4),
    ]
    first = await ledger.apply(events)
    # The reply was lost: the pipeline retries the whole call (a new attempt).
    again = await ledger.apply(events)

    assert [o.duplicate for o in again] == [o.duplicate for o in first]
    assert [o.duplicate for o in again] == [False, False, True, False, True, False]
    assert effects(again) == ["dup:" + e.removeprefix("dup:") for e in effects(first)]

    # Each application is reported with the figures right after it, not today's.
    def figures(outcomes: list[EventOutcome]) -> list[tuple[int, int, int]]:
        return [
            (o.lines[0].available, o.lines[0].reserved, o.lines[0].version)
            for o in outcomes
            if not o.duplicate
        ]

    assert figures(again) == figures(first)
    assert figures(first)[1] == (4, 6, 2)


async def test_the_reported_mark_is_one_key_that_outlives_what_it_vouches_for(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    application = await ledger.apply_viewing([wh(RECV, "A", 1, 1, eid="w1")])
    seen = await redis.get(keys.seen("w1"))
    assert seen == f"on_hand_changed?{application.attempt}:1:0:1:1".encode()

    await ledger.mark_reported(application.attempt)

    assert await redis.get(keys.seen("w1")) == seen  # no second pass over the seen keys
    assert await redis.ttl(keys.reported(application.attempt)) >= await redis.ttl(keys.seen("w1"))
    assert await redis.ttl(keys.reported(application.attempt)) > TTL_S


async def test_reschedule_touches_only_skus_still_pending(ledger: Ledger) -> None:
    await ledger.apply([wh(RECV, "A", 1, 1), wh(RECV, "B", 1, 1)])
    await ledger.confirm({"B": 1})
    await ledger.reschedule({"A": 1, "B": 1, "never-seen": 0}, until_ms=5000)
    assert await ledger.pending_count() == 1  # B and never-seen were not put back
    assert await ledger.due(4999, 10) == []
    assert await ledger.due(5000, 10) == ["A"]
    await ledger.apply([wh(RECV, "A", 1, 2)])  # a new change makes it due now again
    assert await ledger.due(0, 10) == ["A"]


async def test_reschedule_never_delays_a_newer_change(ledger: Ledger) -> None:
    await ledger.apply([wh(RECV, "A", 1, 1)])
    # A push read version 1 and failed; meanwhile another replica applied version 2.
    await ledger.apply([wh(RECV, "A", 1, 2)])
    await ledger.reschedule({"A": 1}, until_ms=10**13)
    now_ms = int(time.time() * 1000)
    assert await ledger.due(now_ms, 10) == ["A"]  # still due now: the newer change goes out


async def test_the_oldest_pending_change_survives_retries_and_leaves_with_its_sku(
    redis: Redis, keys: Keys
) -> None:
    base = 1_800_000_000_000
    now = [base]
    ledger = Ledger(redis, keys, dedupe_ttl_s=TTL_S, default_warehouse=W1, clock_ms=lambda: now[0])
    assert await ledger.oldest_pending_ms() is None
    await ledger.apply([wh(RECV, "A", 1, 1, eid="a1")])
    assert await ledger.oldest_pending_ms() == base
    now[0] = base + 5_000
    await ledger.reschedule({"A": 1}, until_ms=base + 60_000)  # a retry score: time kept aside
    assert await ledger.oldest_pending_ms() == base
    now[0] = base + 6_000
    await ledger.apply([wh(RECV, "B", 1, 2, eid="b1")])
    assert await ledger.oldest_pending_ms() == base
    await ledger.confirm({"A": 1})
    assert await ledger.oldest_pending_ms() == base + 6_000  # A left, and its time with it

    # B's push read version 1; a newer change came meanwhile: B keeps its place and time.
    now[0] = base + 7_000
    await ledger.apply([wh(RECV, "B", 1, 3, eid="b2")])
    await ledger.reschedule({"B": 1}, until_ms=base + 60_000)
    assert await ledger.oldest_pending_ms() == base + 6_000
    assert await ledger.due(now[0], 10) == ["B"]


async def test_reschedule_puts_back_a_sku_another_push_confirmed_too_early(
    ledger: Ledger,
) -> None:
    await ledger.apply([wh(RECV, "A", 1, 1)])
    await ledger.confirm({"A": 0})  # confirms nothing: version 1 is newer
    await ledger.reschedule({"A": 1}, until_ms=7000)
    assert await ledger.due(7000, 10) == ["A"]


async def test_due_is_changes_oldest_first_then_retries(redis: Redis, keys: Keys) -> None:
    now = [1000]
    ledger = Ledger(redis, keys, dedupe_ttl_s=TTL_S, default_warehouse=W1, clock_ms=lambda: now[0])
    await ledger.apply([wh(RECV, "R", 1, 0, eid="r1")])
    (read,) = (await ledger.stock(["R"])).values()
    await ledger.reschedule({"R": read.version}, until_ms=1500)  # a failed push: retry at 1.5 s
    await ledger.apply([wh(RECV, "ZZ", 1, 1, eid="z1")])
    now[0] = 2000
    await ledger.apply([wh(RECV, sku, 1, 2, eid=f"{sku}1") for sku in ("A", "B", "C")])
    now[0] = 3000
    await ledger.apply([wh(RECV, "ZZ", 1, 3, eid="z2")])  # changes again: keeps its place

    # Not by name: the oldest change first, and every change before a retry that is due.
    assert await ledger.due(now[0], 2) == ["ZZ", "A"]
    assert await ledger.due(now[0], 10) == ["ZZ", "A", "B", "C", "R"]
    assert await ledger.due(1400, 10) == ["ZZ", "A", "B", "C"]  # the retry is not due yet

    await ledger.apply([wh(RECV, "R", 1, 4, eid="r2")])  # a new change brings it forward
    assert await ledger.due(1400, 10) == ["ZZ", "A", "B", "C", "R"]


async def test_due_respects_the_limit(ledger: Ledger) -> None:
    await ledger.apply([wh(RECV, f"S{i}", 1, 1) for i in range(5)])
    assert len(await ledger.due(0, 3)) == 3


# ------------------------------------------------------------------ atomicity, TTLs, limits


async def test_a_duplicate_in_the_middle_of_a_batch_does_not_disturb_the_others(
    ledger: Ledger,
) -> None:
    first = order(C, "o1", 1, ("A", 2), ("B", 1))
    await ledger.mark_reported((await ledger.apply_viewing([first])).attempt)
    batch: list[StockEvent] = [
        wh(RECV, "A", 5, 2),
        first,
        order(C, "o2", 3, ("A", 1), ("B", 1)),
    ]
    outcomes = await ledger.apply(batch)
    assert [o.duplicate for o in outcomes] == [False, True, False]
    assert effects(outcomes) == [
        "on_hand_changed",
        "dup:reserved",  # first's two lines
        "dup:reserved",
        "reserved",
        "reserved",
    ]
    await assert_matches_reference(ledger, [first, *batch])


async def test_a_chunk_whose_script_fails_writes_nothing(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    # Corrupt B's hash key so that the script fails on the second event's SECOND line,
    # after the first event (a movement, with its log) was worked out.
    await redis.set(keys.sku("B"), "not a hash")
    bad = order(C, "o1", 1, ("A", 2), ("B", 1))
    batch: list[StockEvent] = [wh(RECV, "A", 5, 1), bad, wh(RECV, "C", 1, 1)]
    with pytest.raises(DependencyError):
        await ledger.apply(batch)
    # The chunk left no trace: not the movement before it, its log, nor line A.
    a = (await ledger.stock(["A"]))["A"]
    assert (a.version, a.reserved, dict(a.on_hand)) == (0, 0, {})
    assert not await redis.exists(keys.order("o1"), keys.movements("A", W1))
    await redis.delete(keys.sku("B"))
    # Retrying the whole batch applies every event once and only once.
    outcomes = await ledger.apply(batch)
    assert effects(outcomes) == ["on_hand_changed", "reserved", "reserved", "on_hand_changed"]
    await assert_matches_reference(ledger, batch)


async def test_dedupe_and_closed_order_keys_expire_the_sku_does_not(
    ledger: Ledger, redis: Redis, keys: Keys
) -> None:
    await ledger.apply([order(C, "o1", 1, ("A", 1)), wh(RECV, "A", 1, 1, eid="w1")])
    await ledger.apply([order(C, "o2", 2, ("A", 1)), order(X, "o2", 3, ("A", 1))])
    for key in (keys.order("o2"), keys.seen("w1")):
        assert 0 < await redis.ttl(key) <= TTL_S, key
    assert await redis.ttl(keys.order("o1")) == -1  # open: its lines' de-dup values with it
    assert await redis.ttl(keys.sku("A")) == -1
    assert await redis.ttl(keys.pending) == -1


async def test_an_open_order_keeps_its_state_until_its_last_line_is_released(
    redis: Redis, keys: Keys
) -> None:
    # A presale order may ship weeks after it was created: longer than the de-dup TTL.
    ledger = Ledger(redis, keys, dedupe_ttl_s=1, default_warehouse=W1)
    two_lines = order(C, "o1", 1, ("A", 2), ("B", 3))
    await ledger.apply([wh(RECV, "A", 5, 0), wh(RECV, "B", 5, 0, eid="wb"), two_lines])
    assert await redis.ttl(keys.order("o1")) == -1  # open: no expiry

    await ledger.apply([order(S, "o1", 2, ("A", 2))])
    assert await redis.ttl(keys.order("o1")) == -1  # B is still reserved

    (cancel,) = await ledger.apply([order(X, "o1", 3, ("B", 3))])
    assert effects([cancel]) == ["released"]
    assert 0 < await redis.ttl(keys.order("o1")) <= 1  # closed: now it may expire
    stock = await ledger.stock(["A", "B"])
    assert (stock["A"].on_hand, stock["A"].reserved) == ({W1: 3}, 0)
    assert (stock["B"].on_hand, stock["B"].reserved) == ({W1: 5}, 0)


async def test_an_order_with_the_most_lines_allowed_applies_and_cancels_whole(
    ledger: Ledger,
) -> None:
    limit = 1000  # SYNC_MAX_LINES may not be set higher
    with pytest.raises(ValidationError):
        SyncSettings(max_lines=limit + 1)
    skus = [f"S{i}" for i in range(limit)]
    created = order(C, "big", 1, *((sku, 1) for sku in skus))
    (outcome,) = await ledger.apply([created])
    assert {line.effect for line in outcome.lines} == {Effect.RESERVED}

    (cancel,) = await ledger.apply([order(X, "big", 2, *((sku, 1) for sku in skus))])
    assert {line.effect for line in cancel.lines} == {Effect.RELEASED}
    assert {s.reserved for s in (await ledger.stock(skus)).values()} == {0}


async def test_script_cache_flush_is_survived(ledger: Ledger, redis: Redis) -> None:
    await ledger.apply([wh(RECV, "A", 1, 1)])
    await redis.script_flush()
    (outcome,) = await ledger.apply([wh(RECV, "A", 1, 2)])
    assert outcome.lines[0].on_hand == 2


async def test_stocktake_older_than_the_movement_log_is_rejected(redis: Redis, keys: Keys) -> None:
    ledger = Ledger(redis, keys, dedupe_ttl_s=TTL_S, default_warehouse=W1, movement_retention_s=1)
    await ledger.apply([wh(RECV, "A", 3, 10_000), wh(RECV, "A", 4, 20_000)])
    # Movements more than 1 s behind the newest (20 s) are trimmed: a count as of 15 s
    # could not be recomputed, so it is refused rather than applied wrongly.
    (old,) = await ledger.apply([wh(TAKE, "A", 100, 15_000)])
    assert (old.lines[0].effect, old.lines[0].on_hand) == (Effect.STOCKTAKE_TOO_OLD, 7)
    (recent,) = await ledger.apply([wh(TAKE, "A", 10, 19_500)])
    assert (recent.lines[0].effect, recent.lines[0].on_hand) == (Effect.STOCKTAKE_APPLIED, 14)


async def test_movement_log_is_trimmed_by_stocktakes_and_retention(
    redis: Redis, keys: Keys
) -> None:
    ledger = Ledger(redis, keys, dedupe_ttl_s=TTL_S, default_warehouse=W1, movement_retention_s=1)
    await ledger.apply([wh(RECV, "A", 1, t) for t in (1_000, 2_500, 3_000, 3_200)])
    log = keys.movements("A", W1)
    assert await redis.zrange(log, 0, -1, withscores=True) == [
        (b"received-A-W1-2500-1|1", 2500.0),
        (b"received-A-W1-3000-1|1", 3000.0),
        (b"received-A-W1-3200-1|1", 3200.0),
    ]
    await ledger.apply([wh(TAKE, "A", 0, 3_000)])
    assert await redis.zrange(log, 0, -1) == [b"received-A-W1-3200-1|1"]


# ------------------------------------------------------------------ the property

SKUS = ("A", "B", "C")
WAREHOUSES = (W1, W2)
TIMES = st.integers(0, 12)  # a narrow range: many equal timestamps


@st.composite
def order_events(draw: st.DrawFn, order_id: str, skus: Sequence[str]) -> list[StockEvent]:
    """At most one event per (order, type): distinct events never share a line key."""
    events: list[StockEvent] = []
    for kind in OrderType:
        if not draw(st.booleans()):
            continue
        chosen = draw(st.lists(st.sampled_from(skus), min_size=1, unique=True))
        lines = tuple(
            OrderLine(
                sku,
                draw(st.integers(1, 5)),
                draw(st.sampled_from((None, *WAREHOUSES))) if kind is S else None,
            )
            for sku in chosen
        )
        event_id = f"{order_id}-{kind.value}"
        events.append(OrderEvent(event_id, order_id, "web", "shop", kind, lines, draw(TIMES)))
    return events


@st.composite
def warehouse_event(draw: st.DrawFn, event_id: str, skus: Sequence[str]) -> WarehouseEvent:
    kind = draw(st.sampled_from(WarehouseType))
    if kind is TAKE:
        quantity = draw(st.integers(0, 20))
    elif kind is ADJ:
        quantity = draw(st.integers(-5, 5).filter(bool))
    else:
        quantity = draw(st.integers(1, 5))
    sku, warehouse = draw(st.sampled_from(skus)), draw(st.sampled_from(WAREHOUSES))
    return WarehouseEvent(event_id, warehouse, kind, sku, quantity, draw(TIMES))


@st.composite
def universes(draw: st.DrawFn) -> list[StockEvent]:
    """2–3 SKUs, 2 warehouses, up to 4 orders and 10 warehouse events (all kinds)."""
    skus = SKUS[: draw(st.integers(2, 3))]
    events: list[StockEvent] = []
    for o in range(draw(st.integers(0, 4))):
        events.extend(draw(order_events(f"o{o}", skus)))
    for i in range(draw(st.integers(0, 10))):
        events.append(draw(warehouse_event(f"w{i}", skus)))
    return events


@st.composite
def deliveries(draw: st.DrawFn, events: list[StockEvent]) -> list[list[StockEvent]]:
    """Every event at least once, some again, in any order, cut into batches of 1–20 (so
    one batch often holds many events on the same SKU and order)."""
    extra = draw(st.lists(st.sampled_from(events), max_size=len(events))) if events else []
    arrival = draw(st.permutations([*events, *extra]))
    batches: list[list[StockEvent]] = []
    while arrival:
        size = draw(st.integers(1, 20))
        batches.append(arrival[:size])
        arrival = arrival[size:]
    return batches


def check_versions(outcomes: Sequence[EventOutcome]) -> dict[str, int]:
    """In arrival order, a SKU's version goes up by one exactly when its figures change,
    or when a stocktake counts it for the first time (even at 0: Taobao must hear it);
    a duplicate changes nothing. Returns each SKU's last version."""
    last: dict[str, tuple[int, int, int]] = {}
    for outcome in outcomes:
        for line in outcome.lines:
            if line.unreported:
                continue  # reports an earlier application, with the figures it had then
            on_hand, reserved, version = last.get(line.sku, (0, 0, 0))
            changed = (line.on_hand, line.reserved) != (on_hand, reserved)
            first_count = (
                version == 0 and not line.duplicate and line.effect is Effect.STOCKTAKE_APPLIED
            )
            assert not (line.duplicate and changed), line
            assert line.version == version + (changed or first_count), line
            assert line.available == line.on_hand - line.reserved
            last[line.sku] = (line.on_hand, line.reserved, line.version)
    return {sku: version for sku, (_, _, version) in last.items()}


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
async def test_any_arrival_order_and_redelivery_matches_the_reference(
    redis: Redis, data: st.DataObject
) -> None:
    """Applying a set of events in any arrival order, with any redeliveries and batching,
    ends in the stock ``reference_apply`` computes from the set in canonical order.

    Generator restriction: at most one event per (order, type). Two distinct events sharing
    a line key are de-duplicated by that key, so whichever arrives first wins; if their
    quantities or warehouses differ, the outcome depends on arrival order by design.
    """
    events = data.draw(universes(), label="events")
    batches = data.draw(deliveries(events), label="batches")
    ledger = Ledger(
        redis,
        Keys(f"prop-{uuid.uuid4().hex}"),
        dedupe_ttl_s=TTL_S,
        default_warehouse=W1,
        # Small chunks: one batch goes in several atomic calls, and a crash can fall
        # between any two of them.
        chunk_lines=data.draw(st.integers(1, 6), label="chunk lines"),
        clock_ms=lambda: 0,
    )
    await ledger.create_marker()
    outcomes: list[EventOutcome] = []
    delivered: set[str] = set()
    reported: set[str] = set()
    for offset, batch in enumerate(batches):
        cut = data.draw(st.integers(0, len(batch)), label="crash after")
        if cut < len(batch):
            # The process died with only the calls for the first events done (their
            # outputs never went out): the whole batch is delivered again.
            for outcome, event in zip(await ledger.apply(batch[:cut]), batch, strict=False):
                delivered.add(event.event_id)
                outcomes.append(outcome)
        in_batch: set[str] = set()
        application = await ledger.apply_viewing(batch, positions={("in", 0): offset})
        for outcome, event in zip(application.outcomes, batch, strict=True):
            # First delivery applies (no line is a duplicate); any later one is a duplicate.
            assert all(line.duplicate == (event.event_id in delivered) for line in outcome.lines)
            # ... a plain one once its outputs were reported, or after a copy in this batch;
            # before that (a crash), it reports the application again.
            plain = event.event_id in reported or event.event_id in in_batch
            assert outcome.duplicate == plain or not outcome.lines
            delivered.add(event.event_id)
            in_batch.add(event.event_id)
            outcomes.append(outcome)
        if data.draw(st.booleans(), label="outputs produced"):  # else: crashed before it
            await ledger.mark_reported(application.attempt)
            reported |= in_batch
    await assert_matches_reference(ledger, events)
    marker = await ledger.marker([("in", 0)])
    assert marker.positions == ({("in", 0): len(batches) - 1} if batches else {})
    versions = check_versions(outcomes)
    stock = await ledger.stock(versions)
    assert {sku: s.version for sku, s in stock.items()} == versions
    changed = {sku for sku, version in versions.items() if version > 0}
    assert set(await ledger.due(0, 100)) == changed


async def test_applying_reads_where_taobao_stands_for_every_sku_it_names(ledger: Ledger) -> None:
    await ledger.apply([wh(RECV, "A", 5, 1, eid="a1")])
    await ledger.confirm({"A": 1})
    await ledger.record_taobao({"A": (1, "SYNCED", 5)})

    application = await ledger.apply_viewing(
        [
            wh(RECV, "A", 2, 2, eid="a2"),
            wh(RECV, "B", 1, 3, eid="b1"),
            wh(RECV, "A", 1, 1, eid="a1"),
        ]
    )
    outcomes, views = application.outcomes, application.views

    assert [o.lines[0].version for o in outcomes] == [2, 1, 1]  # the last: a duplicate
    # As the same atomic call read them: Taobao has A's version 1, nothing of B yet.
    assert views == {"A": TaobaoView(1, "SYNCED", 5), "B": TaobaoView(0)}
