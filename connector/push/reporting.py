"""Push records and the projection's alerts, built from a push report: pure, no I/O.

One ``StockPush`` per item pushed under its lease; alerts for what happened on Taobao's
side: shelf changes made (or declined), refused pushes, codes with no listing, and bans.
Alert ids are deterministic (item or code, kind, ledger version), so a consumer can drop a
repeat after a replica restarts or two replicas report the same change.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from connector.contracts.records import AlertKind, Severity, StockAlert, StockPush, TaobaoState
from connector.push.outcomes import ItemPush, ItemTransition, PushReport, Transition
from connector.taobao.budget import QUOTA_WARN_AT, QuotaView
from connector.taobao.tokens import Expiry

__all__ = ["alerts_for_push", "alerts_for_transitions", "ban_alert", "push_record"]


def push_record(item: ItemPush, *, now_ms: int) -> StockPush:
    """The push record of one item; ``now_ms`` stands in for its time if it has none."""
    pushed_at_ms = item.pushed_at_ms or now_ms
    return StockPush(
        push_id=f"{item.num_iid}:v{item.version}:{pushed_at_ms}",
        num_iid=item.num_iid,
        outcome=item.state,
        pushed_at_ms=pushed_at_ms,
        skus=item.skus,
        calls=item.calls,
        shelf=tuple(t.name for t in item.transitions),
        error_class=item.error_class,
        error_message=item.error[:2000] if item.error else None,
        attempts=sum(c.attempts for c in item.calls),
        retry_at_ms=item.retry_at_ms,
        trace_id=item.trace_id,
        event_trace_ids=item.event_trace_ids,
    )


def alerts_for_push(report: PushReport, *, now_ms: int) -> list[StockAlert]:
    """Shelf changes, refused items and unknown codes of one projection pass."""
    alerts = alerts_for_transitions(report.transitions, now_ms=now_ms)
    alerts += [_refused(item, now_ms) for item in report.items if item.state is TaobaoState.FAILED]
    alerts += [_unmapped(code, version, now_ms) for code, version in report.unmapped.items()]
    return alerts


def ban_alert(ban_s: float, *, detected_ms: int) -> StockAlert:
    """Taobao banned the app's calls: nothing reaches Taobao until it ends."""
    return StockAlert(
        alert_id=f"call_limited:{detected_ms}",
        kind=AlertKind.CALL_LIMITED,
        severity=Severity.CRITICAL,
        message=(
            f"Taobao banned the app's calls for {ban_s:.0f}s (code 7): pushes wait, "
            "the ledger and the results go on"
        ),
        raised_at_ms=detected_ms,
        details={"ban_s": f"{ban_s:.0f}"},
    )


def _refused(item: ItemPush, now_ms: int) -> StockAlert:
    codes = ", ".join(s.sku for s in item.skus)
    return StockAlert(
        alert_id=f"{item.num_iid}:taobao_failure:v{item.version}",
        kind=AlertKind.TAOBAO_FAILURE,
        severity=Severity.CRITICAL,
        message=f"Taobao refused the update of item {item.num_iid} ({codes}): {item.error}"
        + (_PARKED if item.error_class == "caller" else ""),
        raised_at_ms=now_ms,
        num_iid=item.num_iid,
        sku=item.skus[0].sku if len(item.skus) == 1 else None,
        details={
            "skus": codes,
            "error_class": item.error_class or "",
            "code": "" if item.error_code is None else str(item.error_code),
            "sub_code": item.error_sub_code or "",
        },
        trace_id=item.trace_id,
    )


_PARKED = (
    ". Not retried until the code changes again (or in a day): sending the same update is "
    "refused the same way"
)


def _unmapped(code: str, version: int, now_ms: int) -> StockAlert:
    return StockAlert(
        alert_id=f"{code}:unmapped_sku:v{version}",
        kind=AlertKind.UNMAPPED_SKU,
        severity=Severity.WARNING,
        message=f"{code} has no Taobao listing (merchant code unknown): ledger updated only",
        raised_at_ms=now_ms,
        sku=code,
        details={"version": str(version)},
    )


_TRANSITION_ALERTS = {
    Transition.DELISTED: (AlertKind.OUT_OF_STOCK_DELISTED, Severity.WARNING, "sold out: delisted"),
    Transition.RELISTED: (AlertKind.RELISTED, Severity.INFO, "restocked: relisted"),
    Transition.WITHHELD: (
        AlertKind.STOCK_WITHHELD,
        Severity.WARNING,
        "holds more for unpaid orders than the target (isv.error-inventory-invalid-item-quantity,"
        " 宝贝数量必须大于预扣库存): set to what they hold, so nothing is left for sale",
    ),
    Transition.HAND_DELISTED: (
        AlertKind.HAND_DELISTED,
        Severity.INFO,
        "taken down by the merchant: stock set, left off the shelf",
    ),
}


def alerts_for_transitions(
    transitions: Iterable[ItemTransition], *, now_ms: int
) -> list[StockAlert]:
    """Shelf changes the connector made, or declined to make."""
    alerts = []
    for t in transitions:
        kind, severity, what = _TRANSITION_ALERTS[t.kind]
        skus = ", ".join(t.skus)
        alerts.append(
            StockAlert(
                # Stable across a replay: the item, the change and the ledger version.
                alert_id=f"{t.num_iid}:{kind.value.lower()}:v{t.version}",
                kind=kind,
                severity=severity,
                message=f"item {t.num_iid} ({skus}) {what}",
                raised_at_ms=now_ms,
                num_iid=t.num_iid,
                details={"skus": skus},
            )
        )
    return alerts


_EXPIRING = {
    "session": "the seller's session (TAOBAO_SESSION)",
    "write": "the session's write permission (w1), without which no stock can be set",
    "refresh": "the refresh token (after it, the session cannot be renewed)",
}


def session_alerts(expiry: Expiry | None, *, now: datetime, warn_s: float) -> list[StockAlert]:
    """An alert for each of the session's expiries that falls within ``warn_s`` (or has
    passed) and that nothing renews: the refresh token's, and the session's and its write
    permission's when it cannot be refreshed (a fixed-length token, or no refresh token).
    One id per expiry, so a consumer keeps one of each."""
    if expiry is None:
        return []
    renewable = expiry.refreshable is not False and expiry.has_refresh
    found = [("refresh", expiry.refresh_at)]
    if not renewable:
        found += [("session", expiry.session_at), ("write", expiry.write_at)]
    alerts = []
    for what, at in found:
        if at is None or (at - now).total_seconds() > warn_s:
            continue
        left_h = max(0.0, (at - now).total_seconds() / 3600)
        why = "" if renewable else " and cannot be refreshed (a fixed-length token)"
        alerts.append(
            StockAlert(
                # By the hour: a refresh that moves the expiry by seconds is the same one.
                alert_id=f"session_expiring:{what}:{int(at.timestamp()) // 3600}",
                kind=AlertKind.SESSION_EXPIRING,
                severity=Severity.CRITICAL if left_h < 24 else Severity.WARNING,
                message=(
                    f"{_EXPIRING[what]} expires at {at.isoformat()} (in {left_h:.0f} h){why}: "
                    "authorize the app again and set TAOBAO_SESSION and TAOBAO_REFRESH_TOKEN"
                ),
                raised_at_ms=int(now.timestamp() * 1000),
                details={
                    "expires": what,
                    "expires_at": at.isoformat(),
                    "refreshable": str(expiry.refreshable),
                },
            )
        )
    return alerts


def quota_alert(quota: QuotaView, *, now_ms: int) -> StockAlert | None:
    """An alert when today's calls, at the rate so far, pass ``QUOTA_WARN_AT`` of the daily
    quota (one id per China-time day)."""
    projected, limit = quota.projected, quota.limit
    if projected is None or limit is None or projected < QUOTA_WARN_AT * limit:
        return None
    return StockAlert(
        alert_id=f"call_quota_low:{quota.day}",
        kind=AlertKind.CALL_QUOTA_LOW,
        severity=Severity.WARNING,
        message=(
            f"{quota.used} of today's {limit} TOP calls are used; at this rate the day needs "
            f"{projected}. Near the quota, merchant-code lookups wait for midnight (China "
            "time) and the rest goes to stock updates; once it is spent, pushes wait for "
            "midnight. Ask the platform for a higher tier (TAOBAO_DAILY_QUOTA) or call less."
        ),
        raised_at_ms=now_ms,
        details={"used": str(quota.used), "limit": str(limit), "projected": str(projected)},
    )
