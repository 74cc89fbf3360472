"""The sandbox's admin and inspection endpoints (JSON; not part of TOP).

``GET /sandbox/state``, ``GET /sandbox/calls``, ``POST /sandbox/reset``,
``GET|POST /sandbox/faults``, ``POST /sandbox/ban``, ``POST /sandbox/items/{num_iid}``,
``POST /sandbox/tokens/expire`` and ``GET /healthz``; see :mod:`connector.sandbox.gateway`
for what each one takes and answers. Bad input is HTTP 400 ``{"error": "..."}``.
"""

from __future__ import annotations

import json
from typing import Any, Final, cast

from aiohttp import web

from connector.sandbox.call_log import log_time
from connector.sandbox.catalog import load_catalog
from connector.sandbox.faults import FaultConfig
from connector.sandbox.item_events import Snapshot, changes
from connector.sandbox.model import ApproveStatus, Lock, TopFault, item_to_json
from connector.sandbox.responses import json_response
from connector.sandbox.state import STATE_KEY
from connector.taobao.protocol import format_timestamp

__all__ = [
    "MAX_BAN_S",
    "admin_ban",
    "admin_calls",
    "admin_expire_tokens",
    "admin_faults",
    "admin_item",
    "admin_reset",
    "admin_state",
    "healthz",
    "json_body",
]

MAX_BAN_S: Final = 86_400.0  # the longest ban POST /sandbox/ban starts: one day


async def json_body(request: web.Request) -> Any:
    try:
        text = await request.text()
        return json.loads(text) if text.strip() else {}
    except (ValueError, LookupError) as exc:  # bad JSON or UTF-8, unknown charset
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"body is not JSON: {exc}"}), content_type="application/json"
        ) from None


def _bad_request(message: str, status: int = 400) -> web.Response:
    return json_response({"error": message}, status)


async def admin_state(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return json_response(
        {
            "items": [item_to_json(i) for i in state.catalog.items.values()],
            "sc_items": [vars(r) for r in state.catalog.sc_items],
            "bans": state.limiter.bans(state.monotonic()),
            "daily_quota": {
                "limit": state.quota.limit,
                "used_today": state.quota.used(state.config.app_key, state.wall()),
            },
            "tmc": {
                "topics": state.tmc.topics() if state.tmc.permitted is not None else None,
                "unconfirmed": state.tmc.pending(),
            },
            "faults": state.faults.to_json(),
            "zero_onsale": state.config.zero_onsale,
            "time": format_timestamp(state.now()),
        }
    )


async def admin_calls(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        since = int(request.query.get("since", "0"))
        limit = int(request.query.get("limit", "10000"))
    except ValueError:
        return _bad_request("since and limit must be integers")
    calls, next_seq = state.calls.since(since, max(1, limit))
    return json_response({"calls": calls, "next": next_seq})


async def admin_reset(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await json_body(request)
    if not isinstance(body, dict):
        return _bad_request('expected a JSON object like {"catalog": {...}}')
    try:
        catalog = load_catalog(body["catalog"]) if "catalog" in body else None
        faults = FaultConfig.from_json(body["faults"]) if "faults" in body else None
    except ValueError as exc:  # CatalogError is a ValueError
        return _bad_request(str(exc))
    state.reset(catalog, faults)
    return json_response({"status": "reset", "items": len(state.catalog.items)})


async def admin_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if request.method == "POST":
        try:
            state.faults = FaultConfig.from_json(await json_body(request))
        except ValueError as exc:
            return _bad_request(str(exc))
    return json_response(state.faults.to_json())


async def admin_ban(request: web.Request) -> web.Response:
    """Start (or extend) a platform ban now: every call of the app key is answered 7."""
    state = request.app[STATE_KEY]
    body = await json_body(request)
    try:
        app_key, seconds = _ban_args(body, state.config.app_key)
    except ValueError as exc:
        return _bad_request(str(exc))
    now = state.monotonic()
    method = body.get("method") if isinstance(body, dict) else None
    scope = body.get("scope", "app") if isinstance(body, dict) else "app"
    if scope != "app":
        remaining = state.limiter.ban_api(str(method), now, seconds, _SCOPES[scope])
        until = state.wall() + remaining
        return json_response(
            {"method": method, "scope": scope, "remaining_s": remaining, "until": log_time(until)}
        )
    remaining = state.limiter.ban(app_key, now, seconds)
    until = state.wall() + state.limiter.ban_left(app_key, now)
    return json_response({"app_key": app_key, "remaining_s": remaining, "until": log_time(until)})


# POST /sandbox/ban's scopes other than the app (reference §6).
_SCOPES: Final = {
    "api": "accesscontrol.limited-by-api-access-count",
    "app-api": "accesscontrol.limited-by-app-api-access-count",
}


def _ban_args(body: Any, configured_key: str) -> tuple[str, float]:
    if not isinstance(body, dict):
        raise ValueError('expected a JSON object like {"seconds": 60}')  # noqa: TRY004
    unknown = set(body) - {"seconds", "app_key", "scope", "method"}
    if unknown:
        raise ValueError(
            f"unknown keys: {', '.join(sorted(unknown))} (use seconds, app_key, scope, method)"
        )
    scope = body.get("scope", "app")
    if scope not in ("app", *_SCOPES):
        raise ValueError('scope must be "app" (the default), "api" or "app-api"')
    if scope != "app" and not isinstance(body.get("method"), str):
        raise ValueError(
            f'scope "{scope}" bans one API: name it, like '
            '{"method": "taobao.item.quantity.update"}'
        )
    if "seconds" not in body:
        raise ValueError('seconds is required: the ban length, like {"seconds": 60}')
    seconds = body["seconds"]
    # NaN and infinities (json.loads accepts them) fail the range check too.
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(f"seconds must be a number, got {seconds!r}")  # noqa: TRY004
    if not 0 < seconds <= MAX_BAN_S:
        raise ValueError(f"seconds must be a number > 0 and <= {MAX_BAN_S:g}, got {seconds!r}")
    app_key = body.get("app_key", configured_key)
    if app_key != configured_key:
        raise ValueError(
            f"app_key must be the sandbox's app key {configured_key!r} (got {app_key!r}): "
            "a call with any other key is answered 29, never 7"
        )
    return app_key, float(seconds)


async def admin_item(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await json_body(request)
    try:
        num_iid = int(request.match_info["num_iid"])
        edit = _merchant_edit_args(body)
        before = Snapshot.of(state.catalog.get_item(num_iid))
        item = state.catalog.merchant_edit(num_iid, now=state.now(), **edit)
        state.publish(changes(before, item))  # a hand edit is announced like any change
    except TopFault as fault:
        return _bad_request(fault.sub_msg or fault.msg, 404)
    except ValueError as exc:
        return _bad_request(str(exc))
    return json_response(item_to_json(item))


def _merchant_edit_args(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("expected a JSON object")  # noqa: TRY004 - answered as HTTP 400
    unknown = set(body) - {"approve_status", "lock", "quantity", "sku_quantities"}
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    args: dict[str, Any] = {}
    if "approve_status" in body:
        if body["approve_status"] not in ("onsale", "instock"):
            raise ValueError('approve_status must be "onsale" or "instock"')
        args["approve_status"] = cast(ApproveStatus, body["approve_status"])
    if "lock" in body:
        if body["lock"] not in (None, "presale", "campaign"):
            raise ValueError('lock must be null, "presale" or "campaign"')
        args["lock"] = cast("Lock | None", body["lock"])
    if "quantity" in body:
        args["quantity"] = _strict_int(body["quantity"], "quantity")
    if "sku_quantities" in body:
        raw = body["sku_quantities"]
        if not isinstance(raw, dict):
            raise ValueError('sku_quantities must be an object like {"700000000011": 5}')
        args["sku_quantities"] = {
            _strict_int(int(k), "sku_id"): _strict_int(v, "quantity") for k, v in raw.items()
        }
    return args


def _strict_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")  # noqa: TRY004
    return value


async def admin_expire_tokens(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return json_response({"expired": state.tokens.expire_all()})


async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})
