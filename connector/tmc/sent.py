"""What the bridge has already produced, so a redelivered message is not produced again.

A record is marked only after the broker acknowledged it: a bridge that dies in between
produces it once more, and the ledger's own de-duplication (by event id) absorbs that.
One round trip per batch either way.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.exceptions import RedisError

from connector.errors import DependencyError
from connector.keys import Keys
from connector.redis_client import AsyncRedis

__all__ = ["SentRecords"]


class SentRecords:
    def __init__(self, redis: AsyncRedis, keys: Keys, *, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s

    async def unsent(self, ids: Sequence[str]) -> set[str]:
        """The ids not produced yet."""
        if not ids:
            return set()
        try:
            values = await self._redis.mget([self._keys.tmc_sent(i) for i in ids])
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the bridge's records: {exc}") from exc
        return {i for i, value in zip(ids, values, strict=True) if value is None}

    async def mark(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for record_id in ids:
                    pipe.set(self._keys.tmc_sent(record_id), 1, ex=self._ttl_s)
                await pipe.execute()
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the bridge's records: {exc}") from exc
