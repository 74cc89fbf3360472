"""Warnings before the session lapses (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.contracts.records import AlertKind, Severity
from connector.push.reporting import quota_alert, session_alerts
from connector.taobao.budget import QuotaView
from connector.taobao.tokens import Expiry

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
DAY = 86_400


def expiry(
    session_h: float | None,
    write_h: float | None,
    refresh_h: float | None,
    *,
    refreshable: bool | None = True,
    has_refresh: bool = True,
) -> Expiry:
    def at(hours: float | None) -> datetime | None:
        return None if hours is None else NOW + timedelta(hours=hours)

    return Expiry(at(session_h), at(write_h), at(refresh_h), refreshable, has_refresh)  # fmt: skip


def whats(found: Expiry) -> list[str]:
    return [a.details["expires"] for a in session_alerts(found, now=NOW, warn_s=3 * DAY)]


def test_a_refreshable_session_is_only_warned_of_when_its_refresh_token_ends() -> None:
    assert whats(expiry(20, 0.5, 30 * 24)) == []  # renewed on its own
    assert whats(expiry(20, 0.5, 48)) == ["refresh"]


def test_a_fixed_length_token_is_warned_of_days_before_it_ends() -> None:
    found = expiry(60, 80, None, refreshable=False)
    alerts = session_alerts(found, now=NOW, warn_s=3 * DAY)
    assert [a.details["expires"] for a in alerts] == ["session"]  # (write: 80 h, beyond)
    assert alerts[0].kind is AlertKind.SESSION_EXPIRING
    assert alerts[0].severity is Severity.WARNING and "cannot be refreshed" in alerts[0].message
    assert whats(expiry(10, 1, None, refreshable=False)) == ["session", "write"]
    soon = session_alerts(expiry(10, None, None, has_refresh=False), now=NOW, warn_s=3 * DAY)
    assert soon[0].severity is Severity.CRITICAL  # under a day


def test_one_alert_id_per_expiry() -> None:
    found = expiry(10, None, None, refreshable=False)
    first = session_alerts(found, now=NOW, warn_s=3 * DAY)
    later = session_alerts(found, now=NOW + timedelta(hours=1), warn_s=3 * DAY)
    assert [a.alert_id for a in first] == [a.alert_id for a in later]
    assert session_alerts(None, now=NOW, warn_s=DAY) == []


def test_the_daily_quota_is_alerted_once_a_day_when_projected_past_80_percent() -> None:
    half_day = 43_200_000  # ms left: half the China-time day has gone
    assert quota_alert(QuotaView("20261201", 1500, 5000, half_day), now_ms=0) is None
    alert = quota_alert(QuotaView("20261201", 2100, 5000, half_day), now_ms=0)
    assert alert is not None and alert.kind is AlertKind.CALL_QUOTA_LOW
    assert alert.alert_id == "call_quota_low:20261201"
    assert alert.details == {"used": "2100", "limit": "5000", "projected": "4200"}
    assert quota_alert(QuotaView("20261201", 10**6, None, half_day), now_ms=0) is None
