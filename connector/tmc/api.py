"""The message service's and the trades' TOP calls the bridge makes, over ``TopClient``
(signing, the shared call budget, retries by error class and the session all apply).

Reference §5: ``taobao.tmc.user.permit`` (the seller's topics), ``taobao.tmc.messages.consume``
(``group_name``, ``quantity`` 10–200) and ``taobao.tmc.messages.confirm`` (``s_message_ids``,
at most 200). The trade reads (``taobao.trades.sold.increment.get`` by modified window, 100
a page, and ``taobao.trade.fullinfo.get``) are not in the fact sheet: their parameter
limits (a window of at most one day, ``use_has_next``) are read from public SDK code and
marked UNCONFIRMED in the README.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

from connector.errors import TaobaoUnknownOutcome
from connector.taobao.client import TopClient
from connector.taobao.protocol import unwrap_list
from connector.tmc.trades import TRADE_FIELDS, TaobaoTrade, TmcMessage, parse_message, parse_trade

__all__ = [
    "CONFIRM_MAX",
    "CONSUME_MAX",
    "TRADES_PAGE_MAX",
    "TradePage",
    "confirm",
    "consume",
    "fullinfo",
    "increment_page",
    "permit",
]

CONSUME_MAX: Final = 200
CONFIRM_MAX: Final = 200
TRADES_PAGE_MAX: Final = 100


async def permit(client: TopClient, topics: Iterable[str]) -> None:
    """Let the seller's messages of ``topics`` flow (the list replaces the seller's)."""
    await client.call("taobao.tmc.user.permit", {"topics": ",".join(topics)}, idempotent=True)


async def consume(client: TopClient, group: str, quantity: int) -> list[TmcMessage]:
    """Up to ``quantity`` messages of ``group``. Retrying after an unknown outcome is safe:
    the messages it may have taken come back after their visibility timeout."""
    body = await client.call(
        "taobao.tmc.messages.consume",
        {"group_name": group, "quantity": quantity},
        idempotent=True,
        needs_session=False,
    )
    raws = unwrap_list(body.get("messages"), "tmc_message")
    return _parsed("taobao.tmc.messages.consume", lambda: [parse_message(raw) for raw in raws])


async def confirm(client: TopClient, ids: Sequence[int]) -> None:
    """Confirm ``ids``, ``CONFIRM_MAX`` a call; confirming twice is harmless."""
    for start in range(0, len(ids), CONFIRM_MAX):
        chunk = ids[start : start + CONFIRM_MAX]
        await client.call(
            "taobao.tmc.messages.confirm",
            {"s_message_ids": ",".join(str(i) for i in chunk)},
            idempotent=True,
            needs_session=False,
        )


@dataclass(frozen=True, slots=True)
class TradePage:
    trades: list[TaobaoTrade]
    has_next: bool


async def increment_page(
    client: TopClient, start: datetime, end: datetime, page_no: int
) -> TradePage:
    """One page of the seller's trades last modified in ``[start, end]``."""
    body = await client.call(
        "taobao.trades.sold.increment.get",
        {
            "fields": TRADE_FIELDS,
            "start_modified": start,
            "end_modified": end,
            "page_no": page_no,
            "page_size": TRADES_PAGE_MAX,
            "use_has_next": True,
        },
        idempotent=True,
    )
    method = "taobao.trades.sold.increment.get"
    trades = _parsed(
        method, lambda: [parse_trade(r) for r in unwrap_list(body.get("trades"), "trade")]
    )
    return TradePage(trades, bool(body.get("has_next")))


async def fullinfo(client: TopClient, tid: int) -> TaobaoTrade:
    body = await client.call(
        "taobao.trade.fullinfo.get", {"tid": tid, "fields": TRADE_FIELDS}, idempotent=True
    )
    return _parsed("taobao.trade.fullinfo.get", lambda: parse_trade(body["trade"]))


_T = TypeVar("_T")


def _parsed(method: str, parse: Callable[[], _T]) -> _T:
    """A success body we cannot read means we cannot know what it said."""
    try:
        return parse()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TaobaoUnknownOutcome(
            f"malformed success response ({type(exc).__name__}: {exc})", method=method
        ) from None
