"""The policy for failed pushes: which conditions are app-wide, and what a push record says."""

from __future__ import annotations

from connector.contracts.records import TaobaoState
from connector.errors import TaobaoCallerError, TaobaoCallLimited, TaobaoTransientError
from connector.push.item_outcome import (
    FAILED_RETRY_S,
    PARKED_RETRY_S,
    TRANSIENT_RETRY_S,
    ItemOutcome,
    app_wide_retry,
    error_class,
    failure_policy,
    item_push,
)


def pushed(error: Exception | None = None) -> ItemOutcome:
    state = TaobaoState.SYNCED if error is None else TaobaoState.PENDING
    return ItemOutcome(600, {"A": 3}, {"A": 5}, state, error=error)  # type: ignore[arg-type]


DOWN = TaobaoTransientError("isp down", method="taobao.skus.quantity.update")


def test_an_outage_is_every_pushed_item_and_failed_lookup_failing_on_taobaos_side() -> None:
    assert app_wide_retry([pushed(DOWN), pushed(DOWN)], {}) == (TRANSIENT_RETRY_S, False)
    assert app_wide_retry([], {"B": DOWN}) == (TRANSIENT_RETRY_S, False)
    # One item of its own failing (a refusal) or succeeding: no outage.
    assert app_wide_retry([pushed(DOWN), pushed()], {}) == (None, False)
    refused = TaobaoCallerError("isv.invalid", method="taobao.item.quantity.update")
    assert app_wide_retry([pushed(DOWN), pushed(refused)], {}) == (None, False)
    assert app_wide_retry([], {}) == (None, False)


def test_a_call_limit_anywhere_is_app_wide_and_says_so() -> None:
    limited = TaobaoCallLimited("code 7", retry_after_s=42.0, method="taobao.item.get")
    assert app_wide_retry([pushed(), pushed(limited)], {}) == (42.0, True)
    assert app_wide_retry([], {"B": limited}) == (42.0, True)
    short = TaobaoCallLimited("over budget", retry_after_s=0.1, method="taobao.item.get")
    assert app_wide_retry([pushed(short)], {}) == (1.0, True)  # never a busy wait


def test_a_limit_of_one_api_or_of_reads_only_stops_no_other_push() -> None:
    lookups = TaobaoCallLimited("90 % used", retry_after_s=3600.0, method="taobao.skus.custom.get")
    lookups.app_wide = False  # the daily quota's last share is kept for stock updates
    assert app_wide_retry([pushed()], {"B": lookups}) == (None, False)
    # Its codes wait, on their own, for as long as the limit says.
    assert failure_policy(lookups) == (TaobaoState.PENDING, 3600.0)


def test_only_documented_refusals_are_parked_until_the_next_change() -> None:
    refused = TaobaoCallerError("no", method="m", sub_code="isv.item-is-campaign:x")
    assert failure_policy(refused) == (TaobaoState.FAILED, PARKED_RETRY_S)
    gateway = TaobaoCallerError("HTTP 404 from the gateway: check TAOBAO_GATEWAY_URL", method="m")
    assert failure_policy(gateway) == (TaobaoState.FAILED, FAILED_RETRY_S)


def test_a_push_record_confirms_only_what_the_ledger_confirmed() -> None:
    outcome = pushed(DOWN)
    outcome.listings = {"A": 77}
    record = item_push(outcome, {}, now_ms=1_000)

    assert [(s.sku, s.sku_id, s.quantity, s.version, s.confirmed) for s in record.skus] == [
        ("A", 77, 5, 3, False)
    ]
    assert (record.error_class, record.retry_at_ms) == (error_class(DOWN), 1_000)
    assert error_class(DOWN) == "transient"
