"""Writing the push bases of listings pushed by increments (``connector.push.bases``).

They live in the SKU's ledger hash (``b:<listing>``, ``a:<listing>``, ``i:<listing>``)
because the ledger's apply script moves them in the same atomic call as the Taobao-side
order it applies. An increment is recorded before it is sent (``begin``: the base moves and
``i:`` marks it in flight), then ``done`` or ``undo``: a push that dies in between leaves
the mark, and the next push of that listing writes absolutely.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources

from redis.exceptions import RedisError

from connector.errors import DependencyError
from connector.keys import Keys
from connector.redis_client import AsyncRedis

__all__ = ["BaseStore", "Pair"]

_MOVE_LUA = resources.files(__package__).joinpath("base_move.lua").read_text("utf-8")
Pair = tuple[str, str]  # (merchant code, listing)


class BaseStore:
    def __init__(self, redis: AsyncRedis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._move = redis.register_script(_MOVE_LUA)

    async def begin(self, deltas: Mapping[Pair, int]) -> None:
        """Before sending increments: the bases move by them, marked in flight."""
        await self._script("begin", deltas)

    async def undo(self, deltas: Mapping[Pair, int]) -> None:
        """Taobao refused them: nothing was applied."""
        await self._script("undo", deltas)

    async def done(self, pairs: Iterable[Pair]) -> None:
        """Taobao took them."""
        await self._fields(pairs, "i:")

    async def written(self, values: Mapping[Pair, int], at_ms: int) -> None:
        """After an absolute write at Taobao's time ``at_ms``: pair -> quantity written."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for (code, listing), value in values.items():
                    key = self._keys.sku(code)
                    pipe.hset(key, mapping={f"b:{listing}": value, f"a:{listing}": at_ms})
                    pipe.hdel(key, f"i:{listing}", f"z:{listing}")
                await pipe.execute()
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for push bases: {exc}") from exc

    async def forget(self, pairs: Iterable[Pair]) -> None:
        """Their next push is an absolute write."""
        await self._fields(pairs, "b:", "i:", "z:")

    async def _script(self, mode: str, deltas: Mapping[Pair, int]) -> None:
        if not deltas:
            return
        keys = [self._keys.sku(code) for code, _ in deltas]
        args: list[str | int] = [mode]
        for (_, listing), delta in deltas.items():
            args += [listing, delta]
        try:
            await self._move(keys=keys, args=args)
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for push bases: {exc}") from exc

    async def _fields(self, pairs: Iterable[Pair], *prefixes: str) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for code, listing in pairs:
                    pipe.hdel(self._keys.sku(code), *(p + listing for p in prefixes))
                await pipe.execute()
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for push bases: {exc}") from exc
