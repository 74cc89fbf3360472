"""The OAuth ``/token`` endpoint: the refresh grant over the state's token store.

``POST /token`` with ``grant_type=refresh_token``, ``refresh_token``, ``client_id`` and
``client_secret`` rotates the refresh token and issues a new access token (the old one lives
on until it expires). Errors are HTTP 400/401 ``{"error", "error_description"}``. Every
request is logged in the call log with method ``/token`` and the HTTP status as ``code``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Final

from aiohttp import web

from connector.sandbox.call_log import Outcome, log_call
from connector.sandbox.model import TopFault
from connector.sandbox.params import read_params
from connector.sandbox.responses import Body, json_response, new_request_id
from connector.sandbox.state import STATE_KEY, SandboxState

__all__ = ["TOKEN_PATH", "token", "token_answer"]

TOKEN_PATH: Final = "/token"  # noqa: S105 - a URL path, not a secret


# Reference §4.3; the exact error text the platform sends is UNCONFIRMED.
_FIXED_LENGTH = "该应用使用固定时长token，不提供刷新功能 (this app's tokens cannot be refreshed)"


def _oauth_error(status: int, error: str, description: str) -> tuple[int, Body]:
    return status, {"error": error, "error_description": description}


def token_answer(state: SandboxState, form: Mapping[str, str]) -> tuple[int, Body]:
    """The HTTP status and body answering a refresh-grant form."""
    grant = form.get("grant_type", "")
    if not grant:
        return _oauth_error(400, "invalid_request", "grant_type is required")
    if grant != "refresh_token":
        return _oauth_error(400, "unsupported_grant_type", "the sandbox supports refresh_token")
    client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    if not client_id or not secret:
        return _oauth_error(400, "invalid_request", "client_id and client_secret are required")
    if client_id != state.config.app_key or not secrets.compare_digest(
        secret.encode(), state.config.app_secret.encode()
    ):
        return _oauth_error(401, "invalid_client", "unknown client_id or wrong client_secret")
    refresh = form.get("refresh_token", "")
    if not refresh:
        return _oauth_error(400, "invalid_request", "refresh_token is required")
    if not state.tokens.refreshable:
        return _oauth_error(400, "invalid_grant", _FIXED_LENGTH)
    issued = state.tokens.rotate(refresh, state.wall())
    if issued is None:
        return _oauth_error(400, "invalid_grant", "refresh_token is invalid or expired")
    return 200, issued


async def token(request: web.Request) -> web.Response:
    """``/token``: the OAuth refresh grant."""
    started = time.perf_counter()
    state = request.app[STATE_KEY]
    received = state.wall()
    try:
        form = await read_params(request)
    except TopFault:
        form = {}
    if request.method != "POST":
        status, body = _oauth_error(400, "invalid_request", "use POST")
    else:
        status, body = token_answer(state, form)
    error = None if status == 200 else {"code": status, "sub_code": body["error"]}
    entry = Outcome({} if error is None else {"error_response": error})
    log_call(
        state.calls,
        {**form, "method": TOKEN_PATH},
        entry,
        new_request_id(state.ids),
        received=received,
        answered=state.wall(),
        started=started,
    )
    return json_response(body, status)
