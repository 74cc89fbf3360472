"""The app's TOP call budget, shared by every replica through Redis.

TOP limits calls per app key, not per process, and bans the whole app (code 7) when it is
exceeded. So the budget lives in Redis: a GCRA rate limiter per app key, optionally one
more per API method, and a ban key that one replica sets when the platform bans the app
and every replica honours until it expires. A caller reserves a slot and then sleeps until
it; the wait is returned so that it can be shown as a metric and a span attribute.

A ban is the app's (code 7) unless its sub code names one API
(``accesscontrol.limited-by-api-access-count``, ``…-by-app-api-access-count``): then only
that API waits. With a daily quota (``TAOBAO_DAILY_QUOTA``) every call is counted against
the China-time day in the same script that reserves it, so replicas share one count and
never go over; reads that can wait (merchant-code lookups, listing pages) stop at
``READS_YIELD_AT`` of the quota, keeping the rest for stock updates, and once the quota is
spent every call waits for midnight China time (``TaobaoCallLimited``).

Losing Redis's copy (a wipe, a failover to an empty replica) never lets more calls out:
each replica also remembers the bans it has seen, and a replica that has called before and
finds the budget's epoch key gone grants no call for as long as a reservation can reach
ahead plus a burst (the calls other replicas had reserved are unknown), then the
configured rate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Final, Protocol

from redis.exceptions import RedisError

from connector.errors import DependencyError, TaobaoCallLimited
from connector.keys import Keys
from connector.redis_client import AsyncRedis
from connector.taobao.protocol import CHINA_TZ

log = logging.getLogger(__name__)

__all__ = [
    "READS_YIELD_AT",
    "YIELDING_READS",
    "BudgetPolicy",
    "CallBudget",
    "LocalCallBudget",
    "QuotaView",
    "RedisCallBudget",
    "china_day",
]

# Reads that can wait for tomorrow rather than take the last calls from stock updates.
YIELDING_READS: Final = frozenset(
    {
        "taobao.items.custom.get",
        "taobao.skus.custom.get",
        "taobao.items.onsale.get",
        "taobao.items.inventory.get",
    }
)
READS_YIELD_AT: Final = 0.9  # of the daily quota
QUOTA_WARN_AT: Final = 0.8  # of the daily quota, projected: a WARNING once a day

_OVER_BUDGET = "call budget exhausted for longer than the deadline"
_ACQUIRE_LUA = resources.files(__package__).joinpath("budget_acquire.lua").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """Calls per second for the app, and optionally tighter ones per API method."""

    qps: float
    burst: int = 1
    method_qps: Mapping[str, float] = field(default_factory=dict)
    daily_quota: int | None = None  # calls per China-time day for the app

    def refuse_at(self, method: str) -> int:
        """The day's count at which a call of ``method`` is refused (0: no quota)."""
        if self.daily_quota is None:
            return 0
        if method in YIELDING_READS:
            return max(1, int(self.daily_quota * READS_YIELD_AT))
        return self.daily_quota

    def buckets(self, method: str) -> list[tuple[str | None, float, int]]:
        """(method or None for the app-wide budget, interval_ms, burst) for one call."""
        out: list[tuple[str | None, float, int]] = [(None, 1000.0 / self.qps, self.burst)]
        if method in self.method_qps:
            out.append((method, 1000.0 / self.method_qps[method], self.burst))
        return out


class CallBudget(Protocol):
    """What the TOP client needs from a call budget."""

    async def acquire(self, method: str, *, max_wait_s: float) -> float:
        """Wait for a call slot; return the seconds waited.

        Raises ``TaobaoCallLimited`` when the app is banned or the wait would exceed
        ``max_wait_s``: the caller should pause rather than wait in line.
        """
        ...

    async def ban(self, seconds: float, *, method: str | None = None) -> None:
        """Record a platform ban (of the app, or of one API) so that every replica stops
        calling until it ends."""
        ...

    async def ban_remaining_s(self) -> float:
        """Seconds left of the platform ban in force (0 when there is none)."""
        ...

    @property
    def quota(self) -> QuotaView:
        """The day's calls as last seen (no I/O)."""
        ...


def _limited(method: str, reason: str, wait_ms: float) -> TaobaoCallLimited:
    return TaobaoCallLimited(reason, retry_after_s=wait_ms / 1000.0, method=method)


@dataclass(frozen=True, slots=True)
class QuotaView:
    """The day's calls as a replica last saw them (no I/O: for gauges)."""

    day: str
    used: int
    limit: int | None
    day_left_ms: int

    @property
    def projected(self) -> int | None:
        """The day's calls at the rate so far (None: no quota, or too early to say)."""
        elapsed = 1 - self.day_left_ms / 86_400_000
        if self.limit is None or elapsed < 0.01:
            return None
        return int(self.used / elapsed)


def china_day(now: datetime) -> tuple[str, int]:
    """The China-time day of ``now`` (``YYYYMMDD``) and the ms left of it (quotas reset at
    midnight China time)."""
    local = now.astimezone(CHINA_TZ)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return local.strftime("%Y%m%d"), max(1, int((midnight - local).total_seconds() * 1000))


def _quota_spent(policy: BudgetPolicy, method: str) -> str:
    if method in YIELDING_READS:
        return (
            f"{READS_YIELD_AT:.0%} of the daily call quota (TAOBAO_DAILY_QUOTA="
            f"{policy.daily_quota}) is used: reads wait for midnight China time, the rest "
            "is kept for stock updates"
        )
    return (
        f"the daily call quota (TAOBAO_DAILY_QUOTA={policy.daily_quota}) is spent until "
        "midnight China time"
    )


class RedisCallBudget:
    """The budget shared by all replicas (see the module docstring)."""

    def __init__(
        self,
        redis: AsyncRedis,
        keys: Keys,
        app_key: str,
        policy: BudgetPolicy,
        *,
        reach_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(CHINA_TZ),
    ) -> None:
        """``reach_s``: how far ahead any replica's reservation may reach (the longest a
        call waits for its slot: ``TAOBAO_DEADLINE_S``)."""
        self._now = now
        self._redis = redis
        self._keys = keys
        self._app_key = app_key
        self._policy = policy
        self._sleep = sleep
        self._script = redis.register_script(_ACQUIRE_LUA)
        self._clock = clock
        self._reach_ms = reach_s * 1000.0
        self._called = False  # once true, a missing epoch key means the state was lost
        self.quota = QuotaView("", 0, policy.daily_quota, 0)  # as this replica last saw it
        self._warned_day = ""
        # A ban this process has seen (monotonic end), in case Redis loses it.
        self._ban_until = 0.0

    async def acquire(self, method: str, *, max_wait_s: float) -> float:
        waited = 0.0
        while True:
            remembered_ms = (self._ban_until - self._clock()) * 1000.0
            if remembered_ms > 0:  # a ban seen here holds even if Redis lost it
                status, wait_ms = 1, remembered_ms
            else:
                status, wait_ms = await self._try_reserve(method, max(0.0, max_wait_s - waited))
            if status == 0:
                if wait_ms > 0:
                    await self._sleep(wait_ms / 1000.0)
                return waited + wait_ms / 1000.0
            if status == 2:
                raise _limited(method, _OVER_BUDGET, wait_ms)
            if status == 3:
                spent = _limited(method, _quota_spent(self._policy, method), wait_ms)
                spent.app_wide = method not in YIELDING_READS  # stock updates still go
                raise spent
            # Banned: wait it out only if the ban ends within what the caller allows.
            if waited + wait_ms / 1000.0 > max_wait_s:
                reason = "calls banned by the platform (code 7)"
                if status == 4:
                    reason = f"calls of {method} banned by the platform (a ban of this API)"
                limited = _limited(method, reason, wait_ms)
                limited.app_wide = status == 1
                raise limited
            await self._sleep(wait_ms / 1000.0)
            waited += wait_ms / 1000.0

    async def _try_reserve(self, method: str, max_wait_s: float) -> tuple[int, float]:
        buckets = self._policy.buckets(method)
        app = self._app_key
        day, day_left_ms = china_day(self._now())
        keys = [
            self._keys.call_ban(app),
            self._keys.call_ban(app, method),
            self._keys.call_budget_epoch(app),
            self._keys.call_quota(app, day),
        ]
        args: list[float] = [
            max_wait_s * 1000.0,
            self._reach_ms if self._called else 0.0,
            self._policy.refuse_at(method),
            day_left_ms,
            self.quota.used if self.quota.day == day else 0,
        ]
        for bucket_method, interval_ms, burst in buckets:
            keys.append(self._keys.call_budget(self._app_key, bucket_method))
            args.extend((interval_ms, burst))
        try:
            status, wait_ms, used = await self._script(keys=keys, args=args)
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the Taobao call budget: {exc}") from exc
        self._seen_today(day, int(used), day_left_ms)
        # From now on the epoch exists (the call created it if need be): if it is missing at
        # a later call, the budget's state was lost under us.
        self._called = True
        if int(status) == 1:
            self._remember_ban(float(wait_ms) / 1000.0)
        return int(status), float(wait_ms)

    def _seen_today(self, day: str, used: int, day_left_ms: int) -> None:
        self.quota = QuotaView(day, used, self._policy.daily_quota, day_left_ms)
        projected = self.quota.projected
        if projected is None or projected < QUOTA_WARN_AT * (self.quota.limit or 0):
            return
        if self._warned_day != day:
            self._warned_day = day
            log.warning(
                "%d of the day's %d TOP calls used: at this rate the day will need %d "
                "(stock updates keep the last %.0f%%; raise TAOBAO_DAILY_QUOTA with the "
                "platform, or slow the mapping refresh)",
                used,
                self.quota.limit or 0,
                projected,
                (1 - READS_YIELD_AT) * 100,
            )

    def _remember_ban(self, seconds: float) -> None:
        self._ban_until = max(self._ban_until, self._clock() + seconds)

    async def ban(self, seconds: float, *, method: str | None = None) -> None:
        if method is None:
            self._remember_ban(seconds)  # (one API's ban is Redis's alone)
        key = self._keys.call_ban(self._app_key, method)
        ms = max(1, round(seconds * 1000))
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                # Create the ban, or lengthen an existing one; never shorten it.
                pipe.set(key, "1", nx=True, px=ms)
                pipe.pexpire(key, ms, gt=True)
                await pipe.execute()
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the Taobao call budget: {exc}") from exc

    async def ban_remaining_s(self) -> float:
        try:
            ms = await self._redis.pttl(self._keys.call_ban(self._app_key))
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the Taobao call budget: {exc}") from exc
        shared_s = max(0, int(ms)) / 1000.0  # -2: no ban, -1: no expiry (never written so)
        self._remember_ban(shared_s)
        return max(shared_s, self._ban_until - self._clock())


class LocalCallBudget:
    """The same policy for one process, without Redis (tests, a single local run)."""

    def __init__(
        self,
        policy: BudgetPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._sleep = sleep
        self._tats: dict[str | None, float] = {}
        self._banned_until = 0.0
        self._method_bans: dict[str, float] = {}
        self.quota = QuotaView("", 0, None, 0)  # (no daily quota here)

    async def acquire(self, method: str, *, max_wait_s: float) -> float:
        now = self._clock()
        banned_until = max(self._banned_until, self._method_bans.get(method, 0.0))
        if banned_until > now:
            ban_ms = (banned_until - now) * 1000.0
            if ban_ms / 1000.0 > max_wait_s:
                raise _limited(method, "calls banned by the platform (code 7)", ban_ms)
            await self._sleep(ban_ms / 1000.0)
            waited = ban_ms / 1000.0
            return waited + await self.acquire(method, max_wait_s=max_wait_s - waited)
        now_ms = now * 1000.0
        plan = []
        for bucket, interval_ms, burst in self._policy.buckets(method):
            new_tat = max(self._tats.get(bucket, now_ms), now_ms) + interval_ms
            plan.append((bucket, new_tat, new_tat - burst * interval_ms - now_ms))
        wait_ms = max(0.0, *(w for _, _, w in plan))
        if wait_ms / 1000.0 > max_wait_s:
            raise _limited(method, _OVER_BUDGET, wait_ms)
        for bucket, new_tat, _ in plan:
            self._tats[bucket] = new_tat
        if wait_ms > 0:
            await self._sleep(wait_ms / 1000.0)
        return wait_ms / 1000.0

    async def ban(self, seconds: float, *, method: str | None = None) -> None:
        if method is None:
            self._banned_until = max(self._banned_until, self._clock() + seconds)
        else:
            until = max(self._method_bans.get(method, 0.0), self._clock() + seconds)
            self._method_bans[method] = until

    async def ban_remaining_s(self) -> float:
        return max(0.0, self._banned_until - self._clock())
