"""Taobao sells on its own: the sandbox's admin endpoints for Taobao-side trades (not TOP).

- ``POST /sandbox/orders`` ``{"num_iid": N, "sku_id": S (optional), "quantity": Q}``: a
  buyer orders; stock is deducted, or held, per the item's ``sub_stock``
  (:mod:`connector.sandbox.trades`). Answers ``{"tid": …, "oid": …, "status": …}``.
- ``POST /sandbox/orders/{tid}/pay``, ``/close``, ``/ship``, ``/refund``: the trade moves on
  (stock back on a close or a refund before shipment). Answers ``{"tid": …, "status": …}``.
- ``GET /sandbox/orders``: every trade, in the shape ``taobao.trade.fullinfo.get`` answers.

Each publishes the TMC messages the platform would (once the seller has permitted them).
A trade that cannot happen (no such item, not on sale, not enough sellable stock, a trade
in the wrong state) is HTTP 400 or 404 ``{"error": ...}``; ids are JSON numbers above 2^53.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from connector.sandbox.admin import json_body
from connector.sandbox.responses import json_response
from connector.sandbox.state import STATE_KEY
from connector.sandbox.trade_apis import trade_to_json
from connector.sandbox.trades import TradeError

__all__ = ["admin_order_action", "admin_orders", "admin_orders_list"]

_ACTIONS: Final = ("pay", "close", "ship", "refund")
_ALL_FIELDS: Final = frozenset(
    {"tid", "status", "type", "num", "num_iid", "payment", "seller_nick", "buyer_nick",
     "created", "modified", "pay_time", "consign_time", "end_time", "orders"}
)  # fmt: skip


async def admin_orders(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await json_body(request)
    try:
        num_iid, sku_id, quantity = _order_args(body)
        trade, published = state.trades.create(
            state.catalog, num_iid, sku_id, quantity, now=state.now()
        )
    except TradeError as exc:
        return json_response({"error": str(exc)}, 400)
    except ValueError as exc:
        return json_response({"error": str(exc)}, 400)
    state.publish(published)
    return json_response({"tid": trade.tid, "oid": trade.oid, "status": trade.status})


async def admin_order_action(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    action = request.match_info["action"]
    if action not in _ACTIONS:
        return json_response({"error": f"action must be one of {', '.join(_ACTIONS)}"}, 404)
    try:
        tid = int(request.match_info["tid"])
    except ValueError:
        return json_response({"error": "tid must be a number"}, 400)
    book, now = state.trades, state.now()
    try:
        if action == "pay":
            published = book.pay(state.catalog, tid, now=now)
        elif action == "close":
            published = book.close(state.catalog, tid, now=now)
        elif action == "ship":
            published = book.ship(tid, now=now)
        else:
            published = book.refund(state.catalog, tid, now=now)
    except TradeError as exc:
        status = 404 if tid not in book.trades else 400
        return json_response({"error": str(exc)}, status)
    state.publish(published)
    return json_response({"tid": tid, "status": book.trades[tid].status})


async def admin_orders_list(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    trades = [trade_to_json(t, _ALL_FIELDS, True) for t in state.trades.trades.values()]
    return json_response({"trades": trades, "tmc_pending": state.tmc.pending()})


def _order_args(body: Any) -> tuple[int, int | None, int]:
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")  # noqa: TRY004 - answered as HTTP 400
    unknown = set(body) - {"num_iid", "sku_id", "quantity"}
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    sku_id = body.get("sku_id")
    return (
        _integer(body.get("num_iid"), "num_iid"),
        None if sku_id is None else _integer(sku_id, "sku_id"),
        _integer(body.get("quantity"), "quantity"),
    )


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")  # noqa: TRY004 - answered as HTTP 400
    return value
