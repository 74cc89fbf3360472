"""What the connector remembers of each Taobao item, in Redis, and the view planning reads.

One hash per item (``Keys.item``) and one for an incremental update in flight
(``Keys.intent``); see ``ItemStates`` for the fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from redis.exceptions import RedisError

from connector.errors import DependencyError
from connector.keys import Keys
from connector.push.planner import ItemView
from connector.redis_client import AsyncRedis

__all__ = ["OWN_DELIST_SLACK_MS", "ItemStates", "SkuKey", "item_view", "sku_field"]

SkuKey = int | None
# How far Taobao's delist time may trail the time we recorded for our own delisting.
OWN_DELIST_SLACK_MS: Final = 5_000
WRITES_KEPT: Final = 200
WRITES_TTL_S: Final = 900


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def sku_field(key: SkuKey) -> str:
    return "-" if key is None else str(key)


class ItemStates:
    """What the connector remembers of each Taobao item, in a Redis hash per item.

    Fields: ``on_sale``, ``has_skus``, ``q:<sku_id|->`` (last known quantities),
    ``delisted_by_us`` and ``delisted_at_ms`` (our delisting, written before the call),
    ``tb_delist_ms`` (Taobao's delist time at the last read), ``locked_ms`` (when the item
    last refused a full update), ``checked_ms``.
    """

    def __init__(self, redis: AsyncRedis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def load(self, num_iid: int) -> dict[str, str]:
        try:
            raw = await self._redis.hgetall(self._keys.item(num_iid))
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for item state: {exc}") from exc
        return {_text(k): _text(v) for k, v in raw.items()}

    async def save(self, num_iid: int, fields: Mapping[str, str | int]) -> None:
        mapping: dict[Any, Any] = dict(fields)
        try:
            await self._redis.hset(self._keys.item(num_iid), mapping=mapping)
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for item state: {exc}") from exc

    async def record_writes(
        self, num_iid: int, quantities: Mapping[SkuKey, int], at_ms: int
    ) -> None:
        """What a write left on Taobao, kept a while (``WRITES_KEPT``, ``WRITES_TTL_S``) so
        the message-service bridge can tell the connector's changes from others'."""
        if not quantities:
            return
        key = self._keys.item_writes(num_iid)
        entries = [f"{sku_field(k)}:{q}:{at_ms}" for k, q in quantities.items()]
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.lpush(key, *entries)
                pipe.ltrim(key, 0, WRITES_KEPT - 1)
                pipe.expire(key, WRITES_TTL_S)
                await pipe.execute()
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for item state: {exc}") from exc

    async def writes(self, num_iid: int) -> list[tuple[SkuKey, int, int]]:
        """(sku, quantity after, when) of the connector's recent writes, newest first."""
        try:
            raw = await self._redis.lrange(self._keys.item_writes(num_iid), 0, -1)
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for item state: {exc}") from exc
        out: list[tuple[SkuKey, int, int]] = []
        for entry in raw:
            sku, quantity, at_ms = _text(entry).split(":")
            out.append((None if sku == "-" else int(sku), int(quantity), int(at_ms)))
        return out

    async def intent(self, num_iid: int) -> dict[str, str]:
        try:
            raw = await self._redis.hgetall(self._keys.intent(num_iid))
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for an intent: {exc}") from exc
        return {_text(k): _text(v) for k, v in raw.items()}

    async def record_intent(self, num_iid: int, intents: Mapping[SkuKey, str]) -> None:
        fields: dict[Any, Any] = {sku_field(k): v for k, v in intents.items()}
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._keys.intent(num_iid))
                pipe.hset(self._keys.intent(num_iid), mapping=fields)
                await pipe.execute()
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for an intent: {exc}") from exc

    async def clear_intent(self, num_iid: int) -> None:
        try:
            await self._redis.delete(self._keys.intent(num_iid))
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for an intent: {exc}") from exc


def item_view(
    num_iid: int, state: Mapping[str, str], slack_ms: int = OWN_DELIST_SLACK_MS
) -> ItemView:
    quantities: dict[SkuKey, int] = {}
    for name, value in state.items():
        if name.startswith("q:"):
            key = name[2:]
            quantities[None if key == "-" else int(key)] = int(value)
    ours = state.get("delisted_by_us") == "1"
    taobao_ms, our_ms = state.get("tb_delist_ms"), state.get("delisted_at_ms")
    if ours and taobao_ms and our_ms and int(taobao_ms) > int(our_ms) + slack_ms:
        ours = False  # delisted again after us: by the merchant, so it stays down
    return ItemView(
        num_iid=num_iid,
        on_sale=state.get("on_sale") == "1",
        delisted_by_us=ours,
        quantities=quantities,
        has_skus=state.get("has_skus", "1") == "1",
    )
