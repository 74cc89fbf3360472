"""Results and alerts built from what the ledger and Taobao said: pure."""

from __future__ import annotations

from connector.errors import InvalidEvent
from connector.events import OrderEvent, OrderLine, OrderType, WarehouseEvent, WarehouseType
from connector.ledger import Effect, EventOutcome, LineOutcome
from connector.projection import ItemTransition, SkuPush, Transition
from connector.records import AlertKind, EventSource, ResultStatus, TaobaoCall, TaobaoState
from connector.reporting import (
    Applied,
    alerts_for_applied,
    alerts_for_rejection,
    alerts_for_transitions,
    rejected_result,
    result_for,
)

SOURCE = EventSource("orders", 0, 42)


def line(sku: str = "A", effect: Effect = Effect.RESERVED, *, available: int = 5, dup: bool = False,
         oversold: bool = False, version: int = 3) -> LineOutcome:  # fmt: skip
    return LineOutcome(sku, effect, dup, available, 1, available + 1, version, oversold)


def created(*lines: LineOutcome, qty: int = 1, kind: OrderType = OrderType.CREATED) -> Applied:
    event = OrderEvent(
        "e1", "o1", "web", "s", kind, tuple(OrderLine(ln.sku, qty) for ln in lines), 1
    )
    return Applied(event, EventOutcome("e1", lines), SOURCE, "t" * 32)


def synced(
    sku: str = "A", *, state: TaobaoState = TaobaoState.SYNCED, error: str | None = None
) -> SkuPush:
    call = TaobaoCall("taobao.item.quantity.update", 600, (), "rid", "ok")
    return SkuPush(sku, state, 5, 3, (call,), error)


def test_an_applied_event_reports_effects_taobao_state_and_calls() -> None:
    result = result_for(created(line()), {"A": synced()}, {}, now_ms=7)

    assert result.status is ResultStatus.APPLIED
    assert result.event_type == "order.created"
    assert [(s.sku, s.effect, s.taobao_quantity, s.taobao_state) for s in result.skus] == [
        ("A", "reserved", 5, TaobaoState.SYNCED)
    ]
    assert [c.request_id for c in result.taobao_calls] == ["rid"]
    assert result.trace_id == "t" * 32


def test_a_sku_not_pushed_is_synced_only_if_taobao_has_its_version() -> None:
    applied = created(line("A", Effect.NO_STOCK_CHANGE, version=3), line("B", version=4))

    result = result_for(applied, {}, {"A": 3, "B": 2}, now_ms=7)

    assert [s.taobao_state for s in result.skus] == [TaobaoState.SYNCED, TaobaoState.PENDING]


def test_a_sku_not_pushed_and_known_unlisted_is_reported_unmapped() -> None:
    applied = created(line("A", Effect.NO_STOCK_CHANGE, version=3), line("B", version=4))

    result = result_for(applied, {}, {"A": 0, "B": 4}, now_ms=7, unmapped={"A"})

    assert [s.taobao_state for s in result.skus] == [TaobaoState.UNMAPPED, TaobaoState.SYNCED]
    assert result.status is ResultStatus.UNMAPPED
    duplicate = created(line("A", dup=True))
    result = result_for(duplicate, {}, {"A": 0}, now_ms=0, unmapped={"A"})
    assert (result.status, result.skus[0].taobao_state) == (
        ResultStatus.DUPLICATE,
        TaobaoState.UNMAPPED,
    )


def test_status_takes_the_worst_taobao_state() -> None:
    applied = created(line("A"), line("B"))
    failed = synced("B", state=TaobaoState.FAILED, error="refused")
    unmapped = synced("B", state=TaobaoState.UNMAPPED)

    assert (
        result_for(applied, {"A": synced(), "B": failed}, {}, now_ms=0).status
        is ResultStatus.FAILED
    )
    assert (
        result_for(applied, {"A": synced(), "B": unmapped}, {}, now_ms=0).status
        is ResultStatus.UNMAPPED
    )
    duplicate = created(line("A", dup=True))
    assert result_for(duplicate, {}, {"A": 3}, now_ms=0).status is ResultStatus.DUPLICATE


def test_oversell_is_alerted_and_re_raised_with_the_same_id_on_a_duplicate() -> None:
    first = alerts_for_applied(
        created(line(available=-1, oversold=True)), {}, low_stock_threshold=3, now_ms=1
    )
    again = alerts_for_applied(
        created(line(available=-1, oversold=True, dup=True)), {}, low_stock_threshold=3, now_ms=2
    )

    assert [a.kind for a in first] == [AlertKind.OVERSELL]
    assert [a.alert_id for a in again] == [first[0].alert_id]


def test_low_stock_is_alerted_when_the_threshold_is_crossed_only() -> None:
    def low(
        available: int, effect: Effect = Effect.RESERVED, kind: OrderType = OrderType.CREATED
    ) -> list[AlertKind]:
        applied = created(line(effect=effect, available=available), qty=2, kind=kind)
        return [a.kind for a in alerts_for_applied(applied, {}, low_stock_threshold=3, now_ms=0)]

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

    assert [a.kind for a in alerts_for_applied(applied, {}, low_stock_threshold=3, now_ms=0)] == [
        AlertKind.LOW_STOCK
    ]


def test_unmapped_and_failed_skus_are_alerted() -> None:
    pushes = {
        "A": synced("A", state=TaobaoState.UNMAPPED),
        "B": synced("B", state=TaobaoState.FAILED, error="isv.x"),
    }
    alerts = alerts_for_applied(
        created(line("A"), line("B")), pushes, low_stock_threshold=0, now_ms=0
    )

    assert [a.kind for a in alerts] == [AlertKind.UNMAPPED_SKU, AlertKind.TAOBAO_FAILURE]


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


def test_transition_alert_ids_are_stable_across_a_replay() -> None:
    transitions = [ItemTransition(600, Transition.DELISTED, ("A", "B"), 9)]

    first = alerts_for_transitions(transitions, now_ms=1)
    replay = alerts_for_transitions(transitions, now_ms=99)

    assert [a.kind for a in first] == [AlertKind.OUT_OF_STOCK_DELISTED]
    assert first[0].alert_id == replay[0].alert_id
