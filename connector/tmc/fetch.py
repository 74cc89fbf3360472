"""Reading the trades a batch of messages names, in pages rather than one call per trade.

A message says only that a trade changed; the bridge needs the trade as it stands after
that change. ``taobao.trades.sold.increment.get`` returns, 100 a page, every trade modified
in a window; one window from just before the batch's oldest message up to now covers the
batch (and, in a sale, the trades whose messages are still queued). Every trade a page
brings is kept in ``TradeCache``, so the next batches are mostly served without a call;
what the pages do not hold (a clock skew, a window cut short) is read with
``taobao.trade.fullinfo.get``, one call each. Paging stops as soon as every trade needed is
found, and after as many pages as there are trades to find, so a window holding many
other trades never costs more than reading the batch's trades one by one.

A cached trade stands for a message when it is known to be at least as new as the change
the message announced: its ``modified`` time is in a later second than the message's
publication, or it was read at least ``margin_s`` after it (for the clocks and the
whole-second timestamps).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from connector.errors import TaobaoCallerError
from connector.taobao.client import TopClient
from connector.tmc import api
from connector.tmc.trades import TaobaoTrade

__all__ = ["TradeCache", "TradeReader", "TradesRead"]

# How long before a message's publication its trade may have changed (the publication
# delay is UNCONFIRMED; a trade outside the window is read on its own).
WINDOW_LEAD: Final = timedelta(seconds=10)
WINDOW_TAIL: Final = timedelta(seconds=5)  # our clock may trail Taobao's
MAX_WINDOW: Final = timedelta(days=1)
FULLINFO_CONCURRENCY: Final = 4


@dataclass
class TradeCache:
    """Recently read trades, by ``tid``, with when each was read (epoch ms, our clock)."""

    max_entries: int = 20_000
    max_age_ms: int = 15 * 60_000
    margin_ms: int = 3_000
    _trades: OrderedDict[int, tuple[TaobaoTrade, int]] = field(default_factory=OrderedDict)

    def fresh(self, tid: int, published_ms: int, now_ms: int) -> TaobaoTrade | None:
        """The cached trade if it is as new as a change published at ``published_ms``."""
        entry = self._trades.get(tid)
        if entry is None:
            return None
        trade, read_ms = entry
        if now_ms - read_ms > self.max_age_ms:
            return None
        # Taobao's times are whole seconds: a later second is strictly later.
        if trade.modified_ms // 1000 > published_ms // 1000:
            return trade
        return trade if read_ms >= published_ms + self.margin_ms else None

    def put(self, trades: list[TaobaoTrade], read_ms: int) -> None:
        for trade in trades:
            self._trades[trade.tid] = (trade, read_ms)
            self._trades.move_to_end(trade.tid)
        while len(self._trades) > self.max_entries:
            self._trades.popitem(last=False)

    def __len__(self) -> int:
        return len(self._trades)


@dataclass(frozen=True, slots=True)
class TradesRead:
    trades: dict[int, TaobaoTrade]  # tid -> the trade as it stands
    missing: list[int]  # tids Taobao does not know (alerted, their messages confirmed)
    calls: int  # TOP calls made for this batch


class TradeReader:
    """Reads the trades a batch names (see the module docstring)."""

    def __init__(
        self,
        client: TopClient,
        cache: TradeCache | None = None,
        *,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._client = client
        self.cache = cache or TradeCache()
        self._clock_ms = clock_ms

    async def read(self, published: Mapping[int, int]) -> TradesRead:
        """The trades of ``published`` (tid -> when its newest message was published)."""
        found: dict[int, TaobaoTrade] = {}
        now = self._clock_ms()
        for tid, published_ms in published.items():
            trade = self.cache.fresh(tid, published_ms, now)
            if trade is not None:
                found[tid] = trade
        needed = {tid: ms for tid, ms in published.items() if tid not in found}
        calls = 0
        if needed:
            calls += await self._pages(needed, found)
        rest = [tid for tid in needed if tid not in found]
        missing: list[int] = []
        if rest:
            calls += len(rest)
            missing = await self._one_by_one(rest, found)
        return TradesRead(found, missing, calls)

    async def _pages(self, needed: Mapping[int, int], found: dict[int, TaobaoTrade]) -> int:
        """Page the modified window(s) until every needed trade is found; the calls made."""
        start = _at(min(needed.values())) - WINDOW_LEAD
        end = _at(self._clock_ms()) + WINDOW_TAIL
        budget = len(needed)  # never more pages than reading each trade would cost
        calls = 0
        while start < end and calls < budget:
            window_end = min(end, start + MAX_WINDOW)
            page_no, more = 1, True
            while more and calls < budget and any(t not in found for t in needed):
                read_ms = self._clock_ms()
                page = await api.increment_page(self._client, start, window_end, page_no)
                calls += 1
                self.cache.put(page.trades, read_ms)
                for trade in page.trades:
                    if trade.tid in needed:
                        found[trade.tid] = trade
                more, page_no = page.has_next, page_no + 1
            if all(t in found for t in needed):
                break
            start = window_end
        return calls

    async def _one_by_one(self, tids: list[int], found: dict[int, TaobaoTrade]) -> list[int]:
        limit = asyncio.Semaphore(FULLINFO_CONCURRENCY)
        missing: list[int] = []

        async def one(tid: int) -> None:
            async with limit:
                read_ms = self._clock_ms()
                try:
                    trade = await api.fullinfo(self._client, tid)
                except TaobaoCallerError as exc:
                    if "tid" not in (exc.sub_code or "") and "tid" not in str(exc):
                        raise
                    missing.append(tid)  # Taobao does not know this trade
                    return
                self.cache.put([trade], read_ms)
                found[tid] = trade

        await asyncio.gather(*(one(tid) for tid in tids))
        return sorted(missing)


def _at(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
