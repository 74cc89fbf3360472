"""Where a merchant code lives on Taobao, cached in Redis.

A merchant code (商家编码, ``outer_id``) names a SKU of an item with SKUs, or an item
without SKUs; the same code may be listed on several items (the same product in two
listings), and every listing is kept in step. Lookups use ``taobao.items.custom.get``
first (40 codes a call: items without SKUs) and ``taobao.skus.custom.get`` for the rest
(one code a call). Answers are cached with a TTL, and "not on Taobao" for a shorter one so
that a listing the merchant creates later is picked up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from redis.exceptions import RedisError

from connector.errors import DependencyError, TaobaoError
from connector.keys import Keys
from connector.redis_client import AsyncRedis
from connector.taobao.client import OUTER_IDS_PER_ITEMS_CUSTOM_GET, TopClient

__all__ = ["Listing", "MappingCache", "Resolution", "decode_listings", "encode_listings"]

_UNMAPPED = "-"


@dataclass(frozen=True, slots=True, order=True)
class Listing:
    """A place on Taobao a merchant code is sold: an item, and a SKU of it if it has SKUs."""

    num_iid: int
    sku_id: int | None


def encode_listings(listings: Sequence[Listing]) -> str:
    """``600000000001:700000000011,600000000003:`` or ``-`` for none."""
    if not listings:
        return _UNMAPPED
    return ",".join(f"{x.num_iid}:{'' if x.sku_id is None else x.sku_id}" for x in listings)


def decode_listings(text: str) -> tuple[Listing, ...]:
    if text == _UNMAPPED:
        return ()
    out = []
    for part in text.split(","):
        num_iid, _, sku_id = part.partition(":")
        out.append(Listing(int(num_iid), int(sku_id) if sku_id else None))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Resolution:
    found: dict[str, tuple[Listing, ...]]  # code -> listings (empty: not on Taobao)
    failed: dict[str, TaobaoError]  # code -> why its lookup failed this time


def _chunks(values: Sequence[str], size: int) -> list[Sequence[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


class MappingCache:
    """Resolves merchant codes to Taobao listings, through Redis, then the TOP APIs."""

    def __init__(
        self,
        redis: AsyncRedis,
        keys: Keys,
        client: TopClient,
        *,
        ttl_s: int,
        unmapped_ttl_s: int,
        concurrency: int = 4,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._client = client
        self._ttl_s = ttl_s
        self._unmapped_ttl_s = unmapped_ttl_s
        self._concurrency = concurrency

    async def resolve(self, codes: Collection[str]) -> Resolution:
        """Every code's listings (empty when not on Taobao), and the codes whose lookup
        failed with the error, so one failing lookup never holds up the others."""
        ordered = sorted(set(codes))
        resolution = Resolution({}, {})
        if not ordered:
            return resolution
        resolution.found.update(await self._cached(ordered))
        misses = [code for code in ordered if code not in resolution.found]
        if misses:
            found, failed = await self._lookup(misses)
            await self._store(found)
            resolution.found.update(found)
            resolution.failed.update(failed)
        return resolution

    async def known_unmapped(self, codes: Collection[str]) -> set[str]:
        """The codes the cache already knows are not on Taobao (no lookup is made)."""
        ordered = sorted(set(codes))
        if not ordered:
            return set()
        return {code for code, listings in (await self._cached(ordered)).items() if not listings}

    async def forget(self, codes: Collection[str]) -> None:
        """Drop cached answers (e.g. after Taobao said an item no longer exists)."""
        if codes:
            try:
                await self._redis.delete(*(self._keys.mapping(c) for c in codes))
            except RedisError as exc:
                raise DependencyError(f"Redis unreachable for the SKU mapping: {exc}") from exc

    async def _cached(self, codes: list[str]) -> dict[str, tuple[Listing, ...]]:
        try:
            values = await self._redis.mget([self._keys.mapping(c) for c in codes])
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the SKU mapping: {exc}") from exc
        return {
            code: decode_listings(value.decode() if isinstance(value, bytes) else value)
            for code, value in zip(codes, values, strict=True)
            if value is not None
        }

    async def _lookup(
        self, codes: list[str]
    ) -> tuple[dict[str, tuple[Listing, ...]], dict[str, TaobaoError]]:
        found: dict[str, list[Listing]] = {code: [] for code in codes}
        failed: dict[str, TaobaoError] = {}
        for chunk in _chunks(codes, OUTER_IDS_PER_ITEMS_CUSTOM_GET):
            try:
                items = await self._client.items_by_outer_ids(chunk)
            except TaobaoError as exc:
                failed.update(dict.fromkeys(chunk, exc))
                continue
            for item in items:
                # An item with SKUs is addressed through its SKUs' codes, never as a whole.
                if item.outer_id in found and not item.skus:
                    found[item.outer_id].append(Listing(item.num_iid, None))
        rest = [code for code in codes if not found[code] and code not in failed]
        limit = asyncio.Semaphore(self._concurrency)

        async def by_sku(code: str) -> None:
            async with limit:
                try:
                    skus = await self._client.skus_by_outer_id(code)
                except TaobaoError as exc:
                    failed[code] = exc
                    return
                for sku in skus:
                    if sku.num_iid is not None and sku.outer_id == code:
                        found[code].append(Listing(sku.num_iid, sku.sku_id))

        await asyncio.gather(*(by_sku(code) for code in rest))
        resolved = {
            code: tuple(sorted(set(listings)))
            for code, listings in found.items()
            if code not in failed
        }
        return resolved, failed

    async def _store(self, found: dict[str, tuple[Listing, ...]]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for code, listings in found.items():
                    ttl = self._ttl_s if listings else self._unmapped_ttl_s
                    pipe.set(self._keys.mapping(code), encode_listings(listings), ex=ttl)
                await pipe.execute()
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the SKU mapping: {exc}") from exc
