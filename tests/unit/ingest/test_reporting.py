"""Results and ingest alerts built from what the ledger did and where Taobao stood: pure."""

from __future__ import annotations

from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    WarehouseEvent,
    WarehouseType,
)
from connector.contracts.records import AlertKind, EventSource, ResultStatus, TaobaoState
from connector.errors import InvalidEvent
from connector.ingest.reporting import (
    Applied,
    Standing,
    alerts_for_applied,
    alerts_for_rejection,
    rejected_result,
    result_for,
)
from connector.ledger.outcomes import Effect, EventOutcome, LineOutcome, SkuStock

SOURCE = EventSource("orders", 0, 42)


def line(sku: str = "A", effect: Effect = Effect.RESERVED, *, available: int = 5, dup: bool = False,
         oversold: bool = False, version: int = 3) -> LineOutcome:  # fmt: skip
    return LineOutcome(sku, effect, dup, available, 1, available + 1, version, oversold)


def created(*lines: LineOutcome, qty: int = 1, kind: OrderType = OrderType.CREATED) -> Applied:
    event = OrderEvent(
        "e1", "o1", "web", "s", kind, tuple(OrderLine(ln.sku, qty) for ln in lines), 1
    )
    return Applied(event, EventOutcome("e1", lines), SOURCE, "t" * 32)


def stock(sku: str = "A", *, pushed: int = 0, state: str | None = None,
          quantity: int | None = None) -> SkuStock:  # fmt: skip
    return SkuStock(sku, {"WH": 6}, 1, 5, 3, pushed, state, quantity)


def standing(
    *stocks: SkuStock, unmapped: frozenset[str] = frozenset(), safety: int = 0
) -> Standing:
    return Standing({s.sku: s for s in stocks}, unmapped, safety)


def test_a_fresh_change_is_pending_with_the_target_taobao_must_reach() -> None:
    result = result_for(created(line(available=5)), standing(stock(pushed=2)), now_ms=7)

    assert result.status is ResultStatus.APPLIED
    assert result.event_type == "order.created"
    (sku,) = result.skus
    assert (sku.sku, sku.effect, sku.taobao_state) == ("A", "reserved", TaobaoState.PENDING)
    assert (sku.taobao_target, sku.taobao_version, sku.version) == (5, 2, 3)
    assert result.taobao_calls == ()  # ingest makes no Taobao call
    assert result.trace_id == "t" * 32


def test_the_target_keeps_the_safety_stock_and_never_goes_below_zero() -> None:
    low = result_for(created(line(available=-2)), standing(stock(), safety=3), now_ms=0)
    high = result_for(created(line(available=10)), standing(stock(), safety=3), now_ms=0)

    assert [low.skus[0].taobao_target, high.skus[0].taobao_target] == [0, 7]


def test_a_sku_is_synced_once_taobao_has_its_version() -> None:
    applied = created(line("A", Effect.NO_STOCK_CHANGE, version=3), line("B", version=4))

    result = result_for(
        applied,
        standing(stock("A", pushed=3, state="SYNCED", quantity=5), stock("B", pushed=2)),
        now_ms=7,
    )

    assert [s.taobao_state for s in result.skus] == [TaobaoState.SYNCED, TaobaoState.PENDING]
    assert [s.taobao_quantity for s in result.skus] == [5, None]


def test_a_hand_delisted_item_stays_reported_so_once_synced() -> None:
    result = result_for(
        created(line(version=3)), standing(stock(pushed=3, state="HAND_DELISTED")), now_ms=0
    )

    assert result.skus[0].taobao_state is TaobaoState.HAND_DELISTED


def test_a_sku_known_unlisted_is_reported_unmapped() -> None:
    applied = created(line("A", Effect.NO_STOCK_CHANGE, version=3), line("B", version=4))

    result = result_for(
        applied, standing(stock("A"), stock("B", pushed=4), unmapped=frozenset({"A"})), now_ms=7
    )

    assert [s.taobao_state for s in result.skus] == [TaobaoState.UNMAPPED, TaobaoState.SYNCED]
    assert result.status is ResultStatus.UNMAPPED
    duplicate = created(line("A", dup=True))
    result = result_for(duplicate, standing(unmapped=frozenset({"A"})), now_ms=0)
    assert (result.status, result.skus[0].taobao_state) == (
        ResultStatus.DUPLICATE,
        TaobaoState.UNMAPPED,
    )


def test_a_code_whose_last_push_was_refused_is_reported_failed() -> None:
    applied = created(line("A"), line("B"))

    result = result_for(applied, standing(stock("A"), stock("B", state="FAILED")), now_ms=0)

    assert [s.taobao_state for s in result.skus] == [TaobaoState.PENDING, TaobaoState.FAILED]
    assert result.status is ResultStatus.FAILED
    assert result.error_code == "taobao"
    duplicate = created(line("A", dup=True))
    assert (
        result_for(duplicate, standing(stock(pushed=3)), now_ms=0).status is ResultStatus.DUPLICATE
    )


def test_oversell_is_alerted_and_re_raised_with_the_same_id_on_a_duplicate() -> None:
    first = alerts_for_applied(
        created(line(available=-1, oversold=True)), low_stock_threshold=3, now_ms=1
    )
    again = alerts_for_applied(
        created(line(available=-1, oversold=True, dup=True)), low_stock_threshold=3, now_ms=2
    )

    assert [a.kind for a in first] == [AlertKind.OVERSELL]
    assert [a.alert_id for a in again] == [first[0].alert_id]


def test_low_stock_is_alerted_when_the_threshold_is_crossed_only() -> None:
    def low(
        available: int, effect: Effect = Effect.RESERVED, kind: OrderType = OrderType.CREATED
    ) -> list[AlertKind]:
        applied = created(line(effect=effect, available=available), qty=2, kind=kind)
        return [a.kind for a in alerts_for_applied(applied, low_stock_threshold=3, now_ms=0)]

    assert low(3) == [AlertKind.LOW_STOCK]  # 5 -> 3
    assert low(1) == []  # 3 -> 1: already below, alerted before
    # A shipment against its reservation moves stock out without changing availability.
    assert low(3, Effect.SHIPPED, OrderType.SHIPPED) == []
    assert low(3, Effect.SHIPPED_WITHOUT_RESERVATION, OrderType.SHIPPED) == [AlertKind.LOW_STOCK]


def test_damage_counts_as_lowering_availability() -> None:
    event = WarehouseEvent("w1", "WH", WarehouseType.DAMAGED, "A", 2, 1)
    applied = Applied(
        event, EventOutcome("w1", (line(effect=Effect.ON_HAND_CHANGED, available=2),)), SOURCE, None
    )

    assert [a.kind for a in alerts_for_applied(applied, low_stock_threshold=3, now_ms=0)] == [
        AlertKind.LOW_STOCK
    ]


def test_a_rejection_has_its_reason_and_a_poison_alert() -> None:
    rejection = InvalidEvent("bad_quantity", "lines[0].quantity must be 1..100000")

    result = rejected_result(
        SOURCE, rejection, event_id="", kind="order.unknown", trace_id=None, now_ms=0
    )
    alert = alerts_for_rejection(SOURCE, rejection, event_id="", trace_id=None, now_ms=0)

    assert result.status is ResultStatus.REJECTED
    assert result.error_code == "bad_quantity"
    assert alert.kind is AlertKind.POISON_MESSAGE
    assert alert.alert_id == "orders:0:42:poison"
