"""What the gateway answers: TOP's JSON envelopes and the result bodies the APIs render.

:func:`success_body` and :func:`error_body` build TOP's envelopes (``{"<api>_response":
...}`` or, with ``simplify=true``, the bare result; ``{"error_response": ...}``),
:func:`json_response` serialises any body, and the ``*_result``/:func:`render_item`
helpers render catalog records inside a result, with TOP's list wrapping (:func:`wrap`).
"""

from __future__ import annotations

import json
import random
from typing import Any, Final

from aiohttp import web

from connector.sandbox.model import Item, TopFault, item_to_json
from connector.taobao.protocol import format_timestamp, response_key

__all__ = [
    "JSON_CONTENT_TYPE",
    "Body",
    "error_body",
    "json_response",
    "new_request_id",
    "pick",
    "render_item",
    "shelf_result",
    "stock_result",
    "success_body",
    "wrap",
]

JSON_CONTENT_TYPE: Final = "application/json;charset=UTF-8"
_JSON_HEADERS: Final = {"Content-Type": JSON_CONTENT_TYPE}
_BASE36: Final = "0123456789abcdefghijklmnopqrstuvwxyz"

Body = dict[str, Any]


def new_request_id(rng: random.Random) -> str:
    """A random 13-character base36 id, like the platform's ``request_id`` (not a secret)."""
    return "".join(rng.choices(_BASE36, k=13))


# ---------------------------------------------------------------------- envelopes


def json_response(body: Body, status: int = 200) -> web.Response:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return web.Response(body=data, status=status, headers=_JSON_HEADERS)


def error_body(fault: TopFault, request_id: str) -> Body:
    err: Body = {"code": fault.code, "msg": fault.msg}
    if fault.sub_code:
        err["sub_code"] = fault.sub_code
    if fault.sub_msg:
        err["sub_msg"] = fault.sub_msg
    err["request_id"] = request_id
    return {"error_response": err}


def success_body(method: str, result: Body, request_id: str, simplify: bool) -> Body:
    result["request_id"] = request_id
    return result if simplify else {response_key(method): result}


# ---------------------------------------------------------------------- result bodies


def wrap(values: list[Any], singular: str, simplify: bool) -> Any:
    return values if simplify else {singular: values}


def pick(view: Body, fields: frozenset[str] | None) -> Body:
    return {k: v for k, v in view.items() if v is not None and (fields is None or k in fields)}


def render_item(item: Item, fields: frozenset[str] | None, simplify: bool) -> Body:
    view = item_to_json(item)
    skus = view.pop("skus")
    out = pick(view, fields)
    if fields is None or "sku" in fields or "skus" in fields:
        out["skus"] = wrap(skus, "sku", simplify)
    return out


def stock_result(item: Item, simplify: bool) -> Body:
    """The ``item`` answered by both stock-update APIs (reference §3.1)."""
    out: Body = {
        "iid": str(item.num_iid),
        "num_iid": item.num_iid,
        "num": item.num,
        "modified": format_timestamp(item.modified),
    }
    if item.skus:
        skus = [
            {"sku_id": s.sku_id, "quantity": s.quantity, "modified": format_timestamp(s.modified)}
            for s in item.skus
        ]
        out["skus"] = wrap(skus, "sku", simplify)
    return {"item": out}


def shelf_result(item: Item) -> Body:
    return {
        "item": {
            "iid": str(item.num_iid),
            "num_iid": item.num_iid,
            "modified": format_timestamp(item.modified),
        }
    }
