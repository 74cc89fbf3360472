"""The message service's and the trades' TOP APIs the sandbox serves (reference §5).

- ``taobao.tmc.user.permit`` / ``taobao.tmc.user.get``: the seller's message topics;
- ``taobao.tmc.messages.consume`` (``group_name``, ``quantity`` 10–200) and
  ``taobao.tmc.messages.confirm`` (``s_message_ids``, at most 200): at-least-once pull;
- ``taobao.trade.fullinfo.get`` (one trade) and ``taobao.trades.sold.increment.get`` (the
  trades modified in a window of at most a day, 100 per page), in TOP's trade shape.

The fact sheet does not cover the trade APIs' contract: the one-day window, the page size
of at most 100, ``use_has_next``, the fields and their types (``sku_id`` a string,
``refund_status``), the ``isv.invalid-parameter:tid`` answer, and the ``tmc_message`` list
wrapper and ``user_platform`` value are the sandbox's reading of public SDK code and
examples: UNCONFIRMED.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from connector.sandbox.api_types import Api, CallContext, Runner
from connector.sandbox.params import (
    fields_param,
    invalid_param,
    missing_param,
    opt_int,
    opt_str,
    req_int,
    req_str,
    time_param,
    to_int,
)
from connector.sandbox.responses import Body, pick, wrap
from connector.sandbox.trades import BUYER_NICK, SELLER_NICK, Trade
from connector.taobao.protocol import format_timestamp

__all__ = ["SELLER_USER_ID", "TRADE_APIS", "trade_to_json"]

SELLER_USER_ID: Final = 2_200_000_000_001
_MAX_CONFIRM: Final = 200


def _permit(params: Mapping[str, str]) -> Runner:
    topics_text = opt_str(params, "topics")
    topics = [t.strip() for t in (topics_text or "").split(",") if t.strip()]
    if len(topics) > 100:
        raise invalid_param("topics", f"topics 最多 100 个 (got {len(topics)})")

    def run(ctx: CallContext) -> Body:
        ctx.state.tmc.permit(topics, now=ctx.now)
        return {"is_success": True}

    return run


def _user_get(params: Mapping[str, str]) -> Runner:
    fields = fields_param(params)
    if "topics" not in fields:
        raise invalid_param("fields", "fields 必须包含 topics")
    nick = req_str(params, "nick")

    def run(ctx: CallContext) -> Body:
        tmc = ctx.state.tmc
        if nick != SELLER_NICK or tmc.permitted_at is None:
            return {}
        user = {
            "user_id": SELLER_USER_ID,
            "user_nick": SELLER_NICK,
            "topics": wrap(tmc.topics(), "string", ctx.simplify),
            "group_name": tmc.group_name,
            "is_valid": True,
            "created": format_timestamp(tmc.permitted_at),
            "modified": format_timestamp(tmc.permitted_at),
            "user_platform": "tbUIC",
        }
        return {"tmc_user": pick(user, fields | {"topics"})}

    return run


def _consume(params: Mapping[str, str]) -> Runner:
    group = opt_str(params, "group_name") or "default"
    given = opt_int(params, "quantity")
    quantity = 100 if given is None else given  # (the default is UNCONFIRMED)
    if not 10 <= quantity <= 200:
        raise invalid_param("quantity", "quantity 取值范围 10-200")

    def run(ctx: CallContext) -> Body:
        state = ctx.state
        messages = state.tmc.consume(group, quantity, clock=state.monotonic())
        key = state.config.app_key
        rendered = [m.to_json(key, SELLER_USER_ID, SELLER_NICK) for m in messages]
        return {"messages": wrap(rendered, "tmc_message", ctx.simplify)}

    return run


def _confirm(params: Mapping[str, str]) -> Runner:
    text = opt_str(params, "s_message_ids")
    if text is None:
        raise missing_param("s_message_ids")
    ids = [to_int(part.strip(), "s_message_ids", 1) for part in text.split(",") if part.strip()]
    if len(ids) > _MAX_CONFIRM:
        raise invalid_param("s_message_ids", f"s_message_ids 最多 {_MAX_CONFIRM} 个")

    def run(ctx: CallContext) -> Body:
        ctx.state.tmc.confirm(ids)
        return {"is_success": True}

    return run


def _fullinfo(params: Mapping[str, str]) -> Runner:
    fields = fields_param(params)
    tid = req_int(params, "tid", 1)

    def run(ctx: CallContext) -> Body:
        trade = ctx.state.trades.trades.get(tid)
        if trade is None:
            raise invalid_param("tid", f"交易 {tid} 不存在")
        return {"trade": trade_to_json(trade, fields, ctx.simplify)}

    return run


def _increment(params: Mapping[str, str]) -> Runner:
    start = time_param(params, "start_modified")
    end = time_param(params, "end_modified")
    if start is None:
        raise missing_param("start_modified")
    if end is None:
        raise missing_param("end_modified")
    if not start <= end <= start + timedelta(days=1):
        raise invalid_param("end_modified", "end_modified 必须在 start_modified 之后一天以内")
    fields = fields_param(params)
    page_no = opt_int(params, "page_no", 1) or 1
    page_size = opt_int(params, "page_size", 1) or 40
    if page_size > 100:
        raise invalid_param("page_size", "page_size 最大 100")
    use_has_next = (opt_str(params, "use_has_next") or "").lower() == "true"

    def run(ctx: CallContext) -> Body:
        found = list(ctx.state.trades.modified_between(start, end))
        page = found[(page_no - 1) * page_size : page_no * page_size]
        trades = [trade_to_json(t, fields, ctx.simplify) for t in page]
        body: dict[str, Any] = {"trades": wrap(trades, "trade", ctx.simplify)}
        if use_has_next:
            body["has_next"] = page_no * page_size < len(found)
        else:
            body["total_results"] = len(found)
        return body

    return run


def trade_to_json(trade: Trade, fields: frozenset[str], simplify: bool) -> Body:
    """A trade as TOP renders it, its one order under ``orders``."""
    order = {
        "oid": trade.oid,
        "num_iid": trade.num_iid,
        "sku_id": None if trade.sku_id is None else str(trade.sku_id),
        "outer_iid": trade.outer_iid,
        "outer_sku_id": trade.outer_sku_id,
        "title": trade.title,
        "price": trade.price,
        "num": trade.quantity,
        "payment": trade.payment,
        "status": trade.status,
        "refund_status": "SUCCESS" if trade.refund_id else "NO_REFUND",
        "sub_stock": trade.sub_stock,
        "consign_time": _time(trade.consign_time),
        "end_time": _time(trade.end_time),
    }
    view = {
        "tid": trade.tid,
        "status": trade.status,
        "type": "fixed",
        "num": trade.quantity,
        "num_iid": trade.num_iid,
        "payment": trade.payment,
        "seller_nick": SELLER_NICK,
        "buyer_nick": BUYER_NICK,
        "created": format_timestamp(trade.created),
        "modified": format_timestamp(trade.modified),
        "pay_time": _time(trade.pay_time),
        "consign_time": _time(trade.consign_time),
        "end_time": _time(trade.end_time),
    }
    out = pick(view, fields)
    # "orders" names every sub-order field; "orders.oid,orders.num" names some of them.
    named = {f.removeprefix("orders.") for f in fields if f.startswith("orders.")}
    if "orders" in fields or "order" in fields or named:
        wanted = None if "orders" in fields or "order" in fields else frozenset(named)
        out["orders"] = wrap([pick(order, wanted)], "order", simplify)
    return out


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_timestamp(value)


TRADE_APIS: Final[Mapping[str, Api]] = {
    "taobao.tmc.user.permit": Api(_permit),
    "taobao.tmc.user.get": Api(_user_get, needs_session=False),
    "taobao.tmc.messages.consume": Api(_consume, needs_session=False),
    "taobao.tmc.messages.confirm": Api(_confirm, needs_session=False),
    "taobao.trade.fullinfo.get": Api(_fullinfo),
    "taobao.trades.sold.increment.get": Api(_increment),
}
