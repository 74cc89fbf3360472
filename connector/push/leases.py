"""Short exclusive leases in Redis: one holder at a time, expiring if the holder dies.

Used to let one replica at a time push a Taobao item (so an update computed from an older
ledger version can never land after a newer one) and refresh the seller's token. Every
acquisition gets its own random token, so a holder can only renew or release the lease it
took, never one taken after its own expired.
"""

from __future__ import annotations

import secrets
from importlib import resources

from redis.exceptions import RedisError

from connector.errors import DependencyError
from connector.redis_client import AsyncRedis

__all__ = ["Leases"]

_RELEASE_LUA = resources.files(__package__).joinpath("lease_release.lua").read_text("utf-8")
_RENEW_LUA = resources.files(__package__).joinpath("lease_renew.lua").read_text("utf-8")


class Leases:
    """Take, renew and release leases."""

    def __init__(self, redis: AsyncRedis) -> None:
        self._redis = redis
        self._release = redis.register_script(_RELEASE_LUA)
        self._renew = redis.register_script(_RENEW_LUA)

    async def acquire(self, key: str, ttl_s: float, *, token: str | None = None) -> str | None:
        """The lease's token if we got it, else ``None``."""
        token = token or secrets.token_hex(12)
        try:
            taken = await self._redis.set(key, token, nx=True, px=int(ttl_s * 1000))
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for a lease: {exc}") from exc
        return token if taken else None

    async def renew(self, key: str, token: str, ttl_s: float) -> bool:
        """Extend the lease; ``False`` if it expired (and may be someone else's now)."""
        try:
            return bool(await self._renew(keys=[key], args=[token, int(ttl_s * 1000)]))
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for a lease: {exc}") from exc

    async def release(self, key: str, token: str) -> None:
        try:
            await self._release(keys=[key], args=[token])
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for a lease: {exc}") from exc
