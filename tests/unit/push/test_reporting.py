"""Push records and the projection's alerts, built from a push report: pure."""

from __future__ import annotations

from connector.contracts.records import AlertKind, PushedSku, TaobaoCall, TaobaoState
from connector.push.outcomes import ItemPush, ItemTransition, PushReport, Transition
from connector.push.reporting import alerts_for_push, alerts_for_transitions, ban_alert, push_record

CALL = TaobaoCall("taobao.skus.quantity.update", 600, (1, 2), "rid", "ok", attempts=2)


def item(state: TaobaoState = TaobaoState.SYNCED, **kw: object) -> ItemPush:
    skus = (PushedSku("A", 1, 4, 7, confirmed=True), PushedSku("B", 2, 0, 9, confirmed=True))
    return ItemPush(600, state, skus, (CALL, CALL), **kw)  # type: ignore[arg-type]


def test_a_push_record_says_what_was_sent_and_what_came_of_it() -> None:
    pushed = item(
        transitions=(Transition.DELISTED,),
        trace_id="a" * 32,
        event_trace_ids=("b" * 32,),
    )

    record = push_record(pushed, now_ms=1_000)

    assert (record.num_iid, record.outcome, record.pushed_at_ms) == (600, TaobaoState.SYNCED, 1_000)
    assert record.push_id == "600:v9:1000"  # the newest version among its codes
    assert [(s.sku, s.quantity, s.version, s.confirmed) for s in record.skus] == [
        ("A", 4, 7, True),
        ("B", 0, 9, True),
    ]
    assert record.shelf == ("DELISTED",)
    assert record.attempts == 4  # two calls of two HTTP attempts each
    assert (record.trace_id, record.event_trace_ids) == ("a" * 32, ("b" * 32,))
    assert record.error_class is None


def test_a_refused_push_is_recorded_and_alerted_once_per_version() -> None:
    refused = item(
        TaobaoState.FAILED, error_class="caller", error="isv.invalid-parameter", retry_at_ms=9
    )
    report = PushReport(items=[refused])

    record = push_record(refused, now_ms=5)
    first = alerts_for_push(report, now_ms=5)
    again = alerts_for_push(report, now_ms=50)

    assert (record.error_class, record.retry_at_ms) == ("caller", 9)
    assert [a.kind for a in first] == [AlertKind.TAOBAO_FAILURE]
    assert first[0].alert_id == again[0].alert_id == "600:taobao_failure:v9"


def test_codes_found_unlisted_are_alerted_with_their_version() -> None:
    alerts = alerts_for_push(PushReport(unmapped={"SOCKS": 3}), now_ms=0)

    assert [(a.kind, a.sku, a.alert_id) for a in alerts] == [
        (AlertKind.UNMAPPED_SKU, "SOCKS", "SOCKS:unmapped_sku:v3")
    ]


def test_transition_alert_ids_are_stable_across_a_replay() -> None:
    transitions = [ItemTransition(600, Transition.DELISTED, ("A", "B"), 9)]

    first = alerts_for_transitions(transitions, now_ms=1)
    replay = alerts_for_transitions(transitions, now_ms=99)

    assert [a.kind for a in first] == [AlertKind.OUT_OF_STOCK_DELISTED]
    assert first[0].alert_id == replay[0].alert_id


def test_a_ban_is_one_critical_alert() -> None:
    alert = ban_alert(31062.4, detected_ms=77)

    assert (alert.kind, alert.severity.value) == (AlertKind.CALL_LIMITED, "CRITICAL")
    assert "31062s" in alert.message
