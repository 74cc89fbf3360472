"""The sandbox TOP gateway: an aiohttp app, a thin shell over the pure catalog and fault code.

This module assembles the app (:func:`build_app`) and serves ``/router/rest``
(:func:`router`); the rest lives in :mod:`~connector.sandbox.params` (reading parameters),
:mod:`~connector.sandbox.checks` (TOP's gateway checks), :mod:`~connector.sandbox.apis` (the
API table), :mod:`~connector.sandbox.responses` (envelopes and result bodies),
:mod:`~connector.sandbox.tokens` (``/token``), :mod:`~connector.sandbox.admin` (admin
endpoints), :mod:`~connector.sandbox.state` and :mod:`~connector.sandbox.call_log`.

Routes
------

``/router/rest`` (GET or POST)
    The TOP API gateway. Parameters come from the query string and, for POST, from an
    ``application/x-www-form-urlencoded`` (or ``multipart/form-data``) body; body values win.
    Bodies of other content types are ignored. Always HTTP 200 with a TOP JSON envelope.
    Checks run in TOP's order: 9 HTTP method, 21 method, 28/29 app_key, 7 call limit,
    30/31 timestamp (formatted China time or epoch ms, skew ≤ ``max_skew_s``), 32/33/34 ``v``,
    23 format (JSON only), 41 ``isv.invalid-parameter:sign_method`` (the sandbox's choice for
    an unknown sign method), 24/25 sign (verified over every parameter sent, empty ones too),
    22 unknown API, 26/27 session, then 40/41 per-API parameters, then business rules (code 15
    with an ``isv.*`` sub code). Unexpected exceptions answer 15 ``isp.unknown-error``.
``/token`` (POST form)
    OAuth refresh: ``grant_type=refresh_token``, ``refresh_token``, ``client_id``,
    ``client_secret``. Rotates the refresh token; the old access token lives on until it
    expires. Errors are HTTP 400/401 ``{"error", "error_description"}``.

Admin and inspection (JSON; not part of TOP):

``GET /sandbox/state``
    every item with every field and its SKUs, the warehouse records, active bans
    (``bans``: app key -> seconds left, absent once the ban is over), the daily quota, the
    message service (``tmc``: the permitted topics, ``null`` before a permit, and how many
    messages are unconfirmed), the fault config and the ``zero_onsale`` mode.
``GET /sandbox/calls?since=SEQ&limit=N``
    logged calls with ``seq > since`` (at most ``limit``, default 10000) and ``next`` (the
    last seq returned, to pass back as ``since``). Every ``/router/rest`` and ``/token``
    request is logged when it is answered (a held one when its hold ends), refused and
    banned ones included. Each call: ``seq``, ``received`` (when the request arrived) and
    ``time`` (when it was answered), both China-time ISO 8601 with milliseconds, ``method``,
    ``app_key``, ``params`` (``sign``, ``session``, ``refresh_token``, ``client_secret``
    shown as ``***``, long values truncated), ``code`` (null on success), ``sub_code``,
    ``request_id``, ``applied`` (the state changed), ``fault`` (null, ``error``,
    ``timeout``, ``hang_after_apply``, ``drop_after_apply``), ``duration_ms``. ``/token``
    calls are logged with method ``/token`` and the HTTP status as ``code``. The log keeps
    the last ``call_log_size`` calls.
``POST /sandbox/reset``
    back to the start-up state: catalog reloaded (or ``{"catalog": {...}}`` from the body),
    call log, bans and limiter cleared, configured tokens restored, fault config restored
    (or ``{"faults": {...}}`` from the body) and the rng re-seeded.
``GET|POST /sandbox/faults``
    read or replace the fault config (a :class:`~connector.sandbox.faults.FaultConfig` JSON).
``POST /sandbox/ban``
    ``{"seconds": N}`` (a number, 0 < N <= 86400; optional ``"app_key"``, which must be the
    configured one, the default) bans the app key for N seconds from now, or extends its
    ban to end N seconds from now (a ban already running longer is kept). Until it ends,
    every call with that app key is answered 7 ``accesscontrol.limited-by-app-access-count``
    with ``This ban will last for S more seconds`` (S the whole seconds left, ≥ 1) and
    nothing is applied. Answers ``{"app_key", "remaining_s" (S now), "until"}`` (the end,
    in the call log's time format). ``POST /sandbox/reset`` ends every ban.
``POST /sandbox/items/{num_iid}``
    a merchant's edit in the seller centre, bypassing TOP rules: any of ``approve_status``,
    ``lock``, ``quantity`` (item without SKUs), ``sku_quantities`` (``{"sku_id": n}``).
``POST /sandbox/tokens/expire``
    every issued access token expires now (the next API call gets 27).
``POST /sandbox/orders``, ``POST /sandbox/orders/{tid}/{action}``, ``GET /sandbox/orders``
    Taobao selling on its own: see :mod:`~connector.sandbox.admin_orders`. Trades and every
    item change publish TMC messages (:mod:`~connector.sandbox.tmc`), served by the
    ``taobao.tmc.*`` APIs (:mod:`~connector.sandbox.trade_apis`).
``GET /healthz``
    200 ``{"status": "ok"}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from connector.sandbox.admin import (
    admin_ban,
    admin_calls,
    admin_expire_tokens,
    admin_faults,
    admin_item,
    admin_reset,
    admin_state,
    healthz,
)
from connector.sandbox.admin_orders import admin_order_action, admin_orders, admin_orders_list
from connector.sandbox.apis import APIS, CallContext
from connector.sandbox.call_log import Outcome, log_call
from connector.sandbox.checks import check_call
from connector.sandbox.faults import FaultDecision, ban_message, decide
from connector.sandbox.model import TopFault
from connector.sandbox.params import read_params
from connector.sandbox.responses import error_body, json_response, new_request_id, success_body
from connector.sandbox.state import STATE_KEY, SandboxState
from connector.sandbox.tokens import TOKEN_PATH, token

if TYPE_CHECKING:
    from connector.sandbox.server import SandboxConfig

__all__ = ["build_app", "router"]

logger = logging.getLogger(__name__)


async def _apply_fault(decision: FaultDecision, state: SandboxState, app_key: str) -> None:
    """The part of a fault that happens before the API runs (latency, errors, timeouts)."""
    if decision.latency_s:
        await asyncio.sleep(decision.latency_s)
    if decision.error is not None:
        err = decision.error
        if err.starts_ban:
            left = state.limiter.ban(app_key, state.monotonic())
            raise TopFault(err.code, err.msg, err.sub_code, ban_message(left))
        raise TopFault(err.code, err.msg, err.sub_code, err.sub_msg)
    if decision.kind == "timeout":
        await asyncio.sleep(decision.hold_s)
        raise TopFault(15, "Remote service error", "isp.top-remote-connection-timeout", "timeout")


async def _serve_call(request: web.Request, params: dict[str, str], request_id: str) -> Outcome:
    state = request.app[STATE_KEY]
    outcome = Outcome({})
    try:
        runner = check_call(request.method, params, state)
        method = params["method"].strip()
        decision = decide(state.faults, state.rng, method)
        if decision.kind != "none":
            outcome.fault = decision.kind
        await _apply_fault(decision, state, params["app_key"].strip())
        simplify = params.get("simplify", "").strip().lower() == "true"
        result = runner(CallContext(state, state.now(), simplify))
        outcome.applied = APIS[method].writes
        outcome.body = success_body(method, result, request_id, simplify)
        if decision.kind == "hang_after_apply":
            await asyncio.sleep(decision.hold_s)
        outcome.drop = decision.kind == "drop_after_apply"
    except TopFault as fault:
        outcome.body = error_body(fault, request_id)
    return outcome


async def router(request: web.Request) -> web.StreamResponse:
    """``/router/rest``: never raises; anything unexpected becomes 15 ``isp.unknown-error``."""
    started = time.perf_counter()
    state = request.app[STATE_KEY]
    received = state.wall()
    request_id = new_request_id(state.ids)
    params: dict[str, str] = {}
    try:
        params = await read_params(request)
        outcome = await _serve_call(request, params, request_id)
    except TopFault as fault:
        outcome = Outcome(error_body(fault, request_id))
    except Exception:
        logger.exception("sandbox gateway: unexpected error (request_id %s)", request_id)
        unknown = TopFault(15, "Remote service error", "isp.unknown-error", "sandbox error")
        outcome = Outcome(error_body(unknown, request_id))
    log_call(
        state.calls,
        params,
        outcome,
        request_id,
        received=received,
        answered=state.wall(),
        started=started,
    )
    if outcome.drop and request.transport is not None:
        # The change is applied; the client gets no answer at all: an "unknown outcome".
        request.transport.close()
    return json_response(outcome.body)


def _routes() -> Iterator[tuple[str, str, Callable[[web.Request], Any]]]:
    yield "*", "/router/rest", router
    yield "*", TOKEN_PATH, token
    yield "GET", "/sandbox/state", admin_state
    yield "GET", "/sandbox/calls", admin_calls
    yield "POST", "/sandbox/reset", admin_reset
    yield "GET", "/sandbox/faults", admin_faults
    yield "POST", "/sandbox/faults", admin_faults
    yield "POST", "/sandbox/ban", admin_ban
    yield "POST", "/sandbox/items/{num_iid}", admin_item
    yield "POST", "/sandbox/tokens/expire", admin_expire_tokens
    yield "GET", "/sandbox/orders", admin_orders_list
    yield "POST", "/sandbox/orders", admin_orders
    yield "POST", "/sandbox/orders/{tid}/{action}", admin_order_action
    yield "GET", "/healthz", healthz


def build_app(config: SandboxConfig, state: SandboxState | None = None) -> web.Application:
    """The gateway app; its whole state is one :class:`SandboxState` under :data:`STATE_KEY`."""
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[STATE_KEY] = state or SandboxState(config)
    for method, path, handler in _routes():
        app.router.add_route(method, path, handler)
    return app
