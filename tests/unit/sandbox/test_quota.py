"""The sandbox's daily quota: per app key, per China-time day (pure)."""

from __future__ import annotations

from datetime import datetime

from connector.sandbox.faults import CallLimiter
from connector.sandbox.quota import DailyQuota
from connector.taobao.protocol import CHINA_TZ

LATE = datetime(2026, 12, 1, 23, 59, 0, tzinfo=CHINA_TZ).timestamp()


def test_the_quota_is_spent_then_refused_until_midnight_china_time() -> None:
    quota = DailyQuota(limit=2)
    assert quota.spend("app", LATE) is None
    assert quota.spend("app", LATE + 1) is None
    assert quota.spend("app", LATE + 2) == 58  # seconds to 00:00 in Shanghai
    assert quota.spend("other-app", LATE) is None  # per app key
    assert quota.used("app", LATE) == 2
    assert quota.spend("app", LATE + 61) is None  # a new day
    assert quota.used("app", LATE + 61) == 1


def test_no_quota_counts_nothing() -> None:
    quota = DailyQuota(limit=None)
    assert all(quota.spend("app", LATE) is None for _ in range(10))
    assert quota.used("app", LATE) == 0


def test_an_api_ban_stops_only_that_api() -> None:
    limiter = CallLimiter(qps=None, ban_s=1)
    sub = "accesscontrol.limited-by-api-access-count"
    assert limiter.ban_api("taobao.item.quantity.update", 0.0, 30, sub) == 30
    assert limiter.api_banned("taobao.item.quantity.update", 10.0) == (sub, 20)
    assert limiter.api_banned("taobao.items.onsale.get", 10.0) is None
    assert limiter.api_banned("taobao.item.quantity.update", 30.0) is None
    assert limiter.check("app", 10.0) is None  # the app as a whole is not banned
