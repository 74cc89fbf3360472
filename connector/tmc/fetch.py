"""Reading the trades a batch of messages names, in pages rather than one call per trade.

A message says only that a trade changed; the bridge needs the trade as it stands after
that change. ``taobao.trades.sold.increment.get`` returns, 100 a page, every trade modified
in a window. The window runs from just before the batch's oldest message (``WINDOW_LEAD``)
to now, but never from before what an earlier complete scan already covered: in a sale,
each scan reads what was modified since the last one, and every trade it brings is kept in
``TradeCache`` for the messages still queued, which are then served without a call. What the
pages do not hold (a window cut short, a trade that moved between pages while they were
read) is read with ``taobao.trade.fullinfo.get``, one call each: the scan is an economy,
never what correctness rests on. Paging stops after as many pages as there are trades to
find, so a window holding many other trades never costs more than reading the batch's
trades one by one, and a little after every trade needed is found.

A cached trade stands for a message when it is known to be at least as new as the change
the message announced, judged on Taobao's own clock where possible: its ``modified`` time,
or the newest ``modified`` its scan had returned when it was read (Taobao's clock had
reached that), is in a later second than the message's publication (Taobao's times are
whole seconds). Failing that, it was read at least ``margin_ms`` (our clock) after it.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple

from connector.errors import TaobaoCallerError
from connector.taobao.client import TopClient
from connector.tmc import api
from connector.tmc.trades import TaobaoTrade

__all__ = ["TradeCache", "TradeReader", "TradesRead"]

# How long before a message's publication its trade may have changed (the publication
# delay is UNCONFIRMED; a trade outside the window is read on its own).
WINDOW_LEAD_MS: Final = 2_000
WINDOW_TAIL: Final = timedelta(seconds=5)  # our clock may trail Taobao's
MAX_WINDOW: Final = timedelta(days=1)
READ_AHEAD_PAGES: Final = 2  # pages read past the last trade needed, for the next batches
FULLINFO_CONCURRENCY: Final = 4


class _Entry(NamedTuple):
    trade: TaobaoTrade
    read_ms: int  # our clock when it was read
    seen_ms: int  # the newest modified time its scan had returned by then (Taobao's clock)


@dataclass
class TradeCache:
    """Recently read trades, by ``tid``."""

    max_entries: int = 20_000
    max_age_ms: int = 15 * 60_000
    margin_ms: int = 3_000
    _trades: OrderedDict[int, _Entry] = field(default_factory=OrderedDict)
    _by_item: dict[int, set[int]] = field(default_factory=dict)  # num_iid -> tids

    def fresh(self, tid: int, published_ms: int, now_ms: int) -> TaobaoTrade | None:
        """The cached trade if it is as new as a change published at ``published_ms``."""
        entry = self._trades.get(tid)
        if entry is None or now_ms - entry.read_ms > self.max_age_ms:
            return None
        published_s = published_ms // 1000
        newest_s = max(entry.trade.modified_ms, entry.seen_ms) // 1000
        if newest_s > published_s or entry.read_ms >= published_ms + self.margin_ms:
            return entry.trade
        return None

    def put(self, trades: list[TaobaoTrade], read_ms: int, seen_ms: int = 0) -> None:
        for trade in trades:
            self._trades[trade.tid] = _Entry(trade, read_ms, seen_ms)
            self._trades.move_to_end(trade.tid)
            for line in trade.lines:
                self._by_item.setdefault(line.num_iid, set()).add(trade.tid)
        while len(self._trades) > self.max_entries:
            tid, entry = self._trades.popitem(last=False)
            for line in entry.trade.lines:
                tids = self._by_item.get(line.num_iid)
                if tids is not None:
                    tids.discard(tid)
                    if not tids:
                        del self._by_item[line.num_iid]

    def trades_of(self, num_iid: int) -> list[TaobaoTrade]:
        """The cached trades with a line on ``num_iid``."""
        return [self._trades[t].trade for t in self._by_item.get(num_iid, ()) if t in self._trades]

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
        # Every trade modified before this (Taobao's clock, a whole second) was returned
        # by a complete scan, as it stood then; None before the first.
        self._covered_ms: int | None = None

    @property
    def covered_ms(self) -> int | None:
        return self._covered_ms

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
            calls += await self._scan(needed, found)
        rest = [tid for tid in needed if tid not in found]
        missing: list[int] = []
        if rest:
            calls += len(rest)
            missing = await self._one_by_one(rest, found)
        return TradesRead(found, missing, calls)

    async def _scan(self, needed: Mapping[int, int], found: dict[int, TaobaoTrade]) -> int:
        """Page the modified window(s) for the needed trades; the calls made."""
        start_ms = min(needed.values()) - WINDOW_LEAD_MS
        if self._covered_ms is not None:
            start_ms = max(start_ms, self._covered_ms)
        start, end = _at(start_ms), _at(self._clock_ms()) + WINDOW_TAIL
        budget = len(needed)  # never more pages than reading each trade would cost
        enough = -(-len(needed) // api.TRADES_PAGE_MAX) + READ_AHEAD_PAGES
        calls, seen_ms, complete = 0, 0, True
        while start < end and complete:
            window_end = min(end, start + MAX_WINDOW)
            page_no, more = 1, True
            while more:
                if calls >= budget or (calls >= enough and all(t in found for t in needed)):
                    complete = False
                    break
                read_ms = self._clock_ms()
                page = await api.increment_page(self._client, start, window_end, page_no)
                calls += 1
                seen_ms = max([seen_ms, *(t.modified_ms for t in page.trades)])
                self.cache.put(page.trades, read_ms, seen_ms)
                found.update((t.tid, t) for t in page.trades if t.tid in needed)
                more, page_no = page.has_next, page_no + 1
            start = window_end
        if complete and seen_ms:
            self._covered_ms = max(self._covered_ms or 0, seen_ms - seen_ms % 1000)
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
                    if not _no_such_trade(exc):
                        raise
                    missing.append(tid)
                    return
                self.cache.put([trade], read_ms)
                found[tid] = trade

        await asyncio.gather(*(one(tid) for tid in tids))
        return sorted(missing)


def _at(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)


def _no_such_trade(exc: TaobaoCallerError) -> bool:
    """Taobao does not know the trade. UNCONFIRMED: the sub code the platform gives for a
    trade that does not exist (or is not this seller's); an invalid ``tid`` parameter, as
    the sandbox answers, or a ``trade-not-exist`` code are read as such."""
    sub_code = exc.sub_code or ""
    return sub_code.endswith(":tid") or "trade-not-exist" in sub_code
