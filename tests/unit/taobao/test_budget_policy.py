"""The budget's pure parts: the quota's day, what a call is refused at, ban scopes."""

from __future__ import annotations

from datetime import UTC, datetime

from connector.taobao.budget import BudgetPolicy, china_day
from connector.taobao.classify import api_scoped_ban


def test_the_quota_day_is_china_time() -> None:
    # 16:30 UTC is 00:30 the next day in China: a new quota day, 23.5 hours left.
    assert china_day(datetime(2026, 12, 1, 16, 30, tzinfo=UTC)) == ("20261202", 84_600_000)
    assert china_day(datetime(2026, 12, 1, 15, 59, 59, tzinfo=UTC)) == ("20261201", 1_000)


def test_reads_that_can_wait_stop_before_stock_updates() -> None:
    policy = BudgetPolicy(10, daily_quota=5000)
    assert policy.refuse_at("taobao.items.custom.get") == 4500
    assert policy.refuse_at("taobao.skus.quantity.update") == 5000
    assert BudgetPolicy(10).refuse_at("taobao.skus.quantity.update") == 0  # no quota


def test_a_ban_of_one_api_is_told_by_its_sub_code() -> None:
    assert api_scoped_ban("accesscontrol.limited-by-api-access-count")
    assert api_scoped_ban("accesscontrol.limited-by-app-api-access-count")
    assert not api_scoped_ban("accesscontrol.limited-by-app-access-count")
    assert not api_scoped_ban(None)
