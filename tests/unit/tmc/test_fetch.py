"""Reading a batch's trades: paged by modified window, cached, one by one only for the rest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import pytest

from connector.errors import TaobaoCallerError
from connector.taobao.client import TopClient
from connector.taobao.protocol import format_timestamp, parse_timestamp
from connector.tmc.fetch import TradeCache, TradeReader
from connector.tmc.trades import TaobaoTrade

NOW_MS = 1_790_000_000_000
TID = 2**60


def trade(tid: int, modified_ms: int) -> dict[str, Any]:
    stamp = format_timestamp(parse_timestamp(str(modified_ms)))
    return {
        "tid": tid,
        "status": "WAIT_BUYER_PAY",
        "created": stamp,
        "modified": stamp,
        "orders": {"order": [{"oid": tid + 1, "num_iid": 1, "outer_iid": "MUG", "num": 1}]},
    }


class FakeTaobao:
    """Answers the trade reads from a list of trades, 100 a page (``page_size``)."""

    def __init__(self, trades: list[dict[str, Any]], *, unknown: set[int] = frozenset()) -> None:
        self.trades = trades
        self.unknown = unknown
        self.calls: list[tuple[str, Mapping[str, Any]]] = []

    async def call(self, method: str, params: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        self.calls.append((method, params))
        if method == "taobao.trade.fullinfo.get":
            if params["tid"] in self.unknown:
                raise TaobaoCallerError(
                    "no such trade", method=method, sub_code="isv.invalid-parameter:tid"
                )
            return {"trade": next(t for t in self.trades if t["tid"] == params["tid"])}
        size, page = int(params["page_size"]), int(params["page_no"])
        inside = [
            t
            for t in self.trades
            if params["start_modified"] <= parse_timestamp(t["modified"]) <= params["end_modified"]
        ]
        return {
            "trades": {"trade": inside[(page - 1) * size : page * size]},
            "has_next": page * size < len(inside),
        }

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]


def reader(fake: FakeTaobao, now_ms: int = NOW_MS) -> TradeReader:
    return TradeReader(cast(TopClient, fake), clock_ms=lambda: now_ms)


async def test_a_batch_is_read_in_pages_not_one_call_per_trade() -> None:
    trades = [trade(TID + 2 * i, NOW_MS - 1000) for i in range(250)]
    fake = FakeTaobao(trades)
    read = await reader(fake).read({t["tid"]: NOW_MS - 1000 for t in trades})
    assert len(read.trades) == 250 and read.missing == []
    assert fake.methods() == ["taobao.trades.sold.increment.get"] * 3
    assert read.calls == 3


async def test_paging_stops_once_every_trade_needed_is_found() -> None:
    trades = [trade(TID + 2 * i, NOW_MS - 1000) for i in range(500)]
    fake = FakeTaobao(trades)
    read = await reader(fake).read({trades[0]["tid"]: NOW_MS - 1000})
    assert list(read.trades) == [trades[0]["tid"]]
    assert read.calls == 1  # the first page had it: the four others are not read


async def test_trades_read_with_a_page_serve_later_batches_from_the_cache() -> None:
    trades = [trade(TID + 2 * i, NOW_MS - 60_000) for i in range(150)]
    fake = FakeTaobao(trades)
    bridge = reader(fake)
    await bridge.read({trades[0]["tid"]: NOW_MS - 60_000})
    assert len(bridge.cache) == 100  # the whole page was kept
    later = await bridge.read({t["tid"]: NOW_MS - 60_000 for t in trades[1:100]})
    assert later.calls == 0 and len(later.trades) == 99


async def test_what_the_window_lacks_is_read_one_by_one_and_unknown_trades_reported() -> None:
    old = trade(TID, NOW_MS - 3_600_000)  # modified long before its message says
    fake = FakeTaobao([old], unknown={TID + 2})
    read = await reader(fake).read({TID: NOW_MS - 1000, TID + 2: NOW_MS - 1000})
    assert list(read.trades) == [TID]
    assert read.missing == [TID + 2]
    assert fake.methods()[-2:] == ["taobao.trade.fullinfo.get"] * 2


async def test_other_refusals_of_a_trade_read_fail_the_batch() -> None:
    class Refusing(FakeTaobao):
        async def call(self, method: str, params: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
            if method == "taobao.trade.fullinfo.get":
                raise TaobaoCallerError("no rights", method=method, sub_code="isv.permission")
            return await super().call(method, params, **kw)

    with pytest.raises(TaobaoCallerError):
        await reader(Refusing([])).read({TID: NOW_MS - 1000})


def cached(modified_ms: int) -> TaobaoTrade:
    return TaobaoTrade(TID, "WAIT_BUYER_PAY", modified_ms, ())


def test_a_cached_trade_stands_for_a_message_only_once_newer_than_it() -> None:
    cache = TradeCache(margin_ms=3000, max_age_ms=600_000)
    cache.put([cached(NOW_MS)], read_ms=NOW_MS + 500)
    # Published in the same second as the trade's last change, read half a second later:
    # the change may have come after the read.
    assert cache.fresh(TID, NOW_MS, NOW_MS + 600) is None
    # Modified in a later second than the message: the read saw the change.
    assert cache.fresh(TID, NOW_MS - 1000, NOW_MS + 600) is not None
    # Read long enough after the message's publication.
    assert cache.fresh(TID, NOW_MS - 2600, NOW_MS + 600) is not None
    # Too old to trust at all.
    assert cache.fresh(TID, NOW_MS - 5000, NOW_MS + 700_000) is None


def test_the_cache_keeps_the_newest_entries_only() -> None:
    cache = TradeCache(max_entries=2)
    for i in range(3):
        cache.put([TaobaoTrade(TID + i, "", NOW_MS, ())], read_ms=NOW_MS)
    assert len(cache) == 2
    assert cache.fresh(TID, 0, NOW_MS) is None
    assert cache.fresh(TID + 2, 0, NOW_MS) is not None
