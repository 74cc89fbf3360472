"""The app's TOP call budget, shared by every replica through Redis.

TOP limits calls per app key, not per process, and bans the whole app (code 7) when it is
exceeded. So the budget lives in Redis: a GCRA rate limiter per app key, optionally one
more per API method, and a ban key that one replica sets when the platform bans the app
and every replica honours until it expires. A caller reserves a slot and then sleeps until
it; the wait is returned so that it can be shown as a metric and a span attribute.

Losing Redis's copy (a wipe, a failover to an empty replica) never lets more calls out:
each replica also remembers the bans it has seen, and a replica that has called before and
finds the budget's epoch key gone grants no call for as long as a reservation can reach
ahead plus a burst (the calls other replicas had reserved are unknown), then the
configured rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Protocol

from redis.exceptions import RedisError

from connector.errors import DependencyError, TaobaoCallLimited
from connector.keys import Keys
from connector.redis_client import AsyncRedis

__all__ = ["BudgetPolicy", "CallBudget", "LocalCallBudget", "RedisCallBudget"]

_OVER_BUDGET = "call budget exhausted for longer than the deadline"
_ACQUIRE_LUA = resources.files(__package__).joinpath("budget_acquire.lua").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """Calls per second for the app, and optionally tighter ones per API method."""

    qps: float
    burst: int = 1
    method_qps: Mapping[str, float] = field(default_factory=dict)

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

    async def ban(self, seconds: float) -> None:
        """Record a platform ban so that every replica stops calling until it ends."""
        ...

    async def ban_remaining_s(self) -> float:
        """Seconds left of the platform ban in force (0 when there is none)."""
        ...


def _limited(method: str, reason: str, wait_ms: float) -> TaobaoCallLimited:
    return TaobaoCallLimited(reason, retry_after_s=wait_ms / 1000.0, method=method)


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
    ) -> None:
        """``reach_s``: how far ahead any replica's reservation may reach (the longest a
        call waits for its slot: ``TAOBAO_DEADLINE_S``)."""
        self._redis = redis
        self._keys = keys
        self._app_key = app_key
        self._policy = policy
        self._sleep = sleep
        self._script = redis.register_script(_ACQUIRE_LUA)
        self._clock = clock
        self._reach_ms = reach_s * 1000.0
        self._called = False  # once true, a missing epoch key means the state was lost
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
            # Banned: wait it out only if the ban ends within what the caller allows.
            if waited + wait_ms / 1000.0 > max_wait_s:
                raise _limited(method, "calls banned by the platform (code 7)", wait_ms)
            await self._sleep(wait_ms / 1000.0)
            waited += wait_ms / 1000.0

    async def _try_reserve(self, method: str, max_wait_s: float) -> tuple[int, float]:
        buckets = self._policy.buckets(method)
        app = self._app_key
        keys = [self._keys.call_ban(app), self._keys.call_budget_epoch(app)]
        args: list[float] = [max_wait_s * 1000.0, self._reach_ms if self._called else 0.0]
        for bucket_method, interval_ms, burst in buckets:
            keys.append(self._keys.call_budget(self._app_key, bucket_method))
            args.extend((interval_ms, burst))
        try:
            status, wait_ms = await self._script(keys=keys, args=args)
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the Taobao call budget: {exc}") from exc
        # From now on the epoch exists (the call created it if need be): if it is missing at
        # a later call, the budget's state was lost under us.
        self._called = True
        if int(status) == 1:
            self._remember_ban(float(wait_ms) / 1000.0)
        return int(status), float(wait_ms)

    def _remember_ban(self, seconds: float) -> None:
        self._ban_until = max(self._ban_until, self._clock() + seconds)

    async def ban(self, seconds: float) -> None:
        self._remember_ban(seconds)
        key = self._keys.call_ban(self._app_key)
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

    async def acquire(self, method: str, *, max_wait_s: float) -> float:
        now = self._clock()
        if self._banned_until > now:
            ban_ms = (self._banned_until - now) * 1000.0
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

    async def ban(self, seconds: float) -> None:
        self._banned_until = max(self._banned_until, self._clock() + seconds)

    async def ban_remaining_s(self) -> float:
        return max(0.0, self._banned_until - self._clock())
