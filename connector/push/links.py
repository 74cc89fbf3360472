"""The span contexts of the input events behind each pending SKU, for the push spans' links.

Ingest hands them over in-process after each ledger step; the projection takes them when it
pushes the SKU. Bounded: a SKU keeps its last ``per_sku`` contexts and the oldest SKUs are
dropped beyond ``max_skus`` (a SKU pushed by another replica is never taken here). A push
without links is still correct, it is only less traceable.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Final

from opentelemetry.trace import SpanContext

__all__ = ["EventLinks"]

PER_SKU: Final = 8
MAX_SKUS: Final = 10_000


class EventLinks:
    def __init__(self, *, per_sku: int = PER_SKU, max_skus: int = MAX_SKUS) -> None:
        self._per_sku = per_sku
        self._max_skus = max_skus
        self._links: dict[str, list[SpanContext]] = {}

    def add(self, parents: Mapping[str, Sequence[SpanContext]]) -> None:
        for sku, contexts in parents.items():
            kept = self._links.pop(sku, [])  # re-inserted last: the dict stays oldest first
            kept.extend(contexts)
            self._links[sku] = kept[-self._per_sku :]
        while len(self._links) > self._max_skus:
            del self._links[next(iter(self._links))]

    def take(self, skus: Collection[str]) -> dict[str, list[SpanContext]]:
        return {sku: links for sku in skus if (links := self._links.pop(sku, None))}

    def __len__(self) -> int:
        return len(self._links)
