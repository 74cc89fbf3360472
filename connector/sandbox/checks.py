"""TOP's gateway checks on a call, in the platform's order, before any API runs.

:func:`check_call` checks the HTTP method (9), ``method`` (21), ``app_key`` (28/29), the call
limit and bans (7), ``timestamp`` (30/31, skew within ``max_skew_s``), ``v`` (32/33/34),
``format`` (23), ``sign_method`` (41) and ``sign`` (24/25), that the API exists (22) and,
for APIs that need one, the ``session`` (26/27); then it runs the API's own parameter
checks and returns its :data:`~connector.sandbox.apis.Runner`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from connector.sandbox.apis import APIS, Runner
from connector.sandbox.faults import BAN_SUB_CODE, ban_message
from connector.sandbox.params import invalid_param, platform_error
from connector.sandbox.state import SandboxState
from connector.taobao.protocol import API_VERSION
from connector.taobao.signing import SIGN_METHODS, verify

__all__ = ["check_call"]

_VERSION_RE: Final = re.compile(r"[0-9]+(\.[0-9]+)*")


def _check_timestamp(params: Mapping[str, str], state: SandboxState) -> None:
    text = params.get("timestamp", "").strip()
    if not text:
        raise platform_error(30)
    try:
        sent = state.parse_timestamp(text)
    except (ValueError, OverflowError, OSError):
        raise platform_error(
            31, None, 'timestamp 应为 "yyyy-MM-dd HH:mm:ss" (GMT+8) 或毫秒'
        ) from None
    skew = abs((sent - state.now()).total_seconds())
    if skew > state.config.max_skew_s:
        allowed = f"{state.config.max_skew_s:g}"
        raise platform_error(31, None, f"时间戳误差超过 {allowed} 秒 (allowed skew is {allowed} s)")


def _check_version_and_format(params: Mapping[str, str]) -> None:
    version = params.get("v", "").strip()
    if not version:
        raise platform_error(32)
    if not _VERSION_RE.fullmatch(version):
        raise platform_error(33)
    if version != API_VERSION:
        raise platform_error(34, None, f"only v={API_VERSION} is supported")
    fmt = params.get("format", "json").strip().lower() or "json"
    if fmt != "json":
        raise platform_error(23, None, "the sandbox speaks JSON only; send format=json")


def _check_signature(params: Mapping[str, str], state: SandboxState) -> None:
    method = params.get("sign_method", "md5") or "md5"
    if method not in SIGN_METHODS:
        raise invalid_param("sign_method", f"sign_method 应为 {', '.join(SIGN_METHODS)}")
    if not params.get("sign"):
        raise platform_error(24)
    if not verify(params, state.config.app_secret):
        raise platform_error(25)


def _check_session(params: Mapping[str, str], state: SandboxState) -> None:
    session = params.get("session", "").strip()
    if not session:
        raise platform_error(26)
    if not state.tokens.session_valid(session, state.wall()):
        raise platform_error(27, "invalid-sessionkey", "session 无效或已过期 (invalid or expired)")


def check_call(http_method: str, params: Mapping[str, str], state: SandboxState) -> Runner:
    """All gateway checks in TOP's order; returns the API's runner or raises :class:`TopFault`."""
    if http_method not in ("GET", "POST"):
        raise platform_error(9, None, "请用大写的POST或GET")
    method = params.get("method", "").strip()
    if not method:
        raise platform_error(21)
    app_key = params.get("app_key", "").strip()
    if not app_key:
        raise platform_error(28)
    if app_key != state.config.app_key:
        raise platform_error(29)
    banned = state.limiter.check(app_key, state.monotonic())
    if banned is not None:
        raise platform_error(7, BAN_SUB_CODE, ban_message(banned))
    _check_timestamp(params, state)
    _check_version_and_format(params)
    _check_signature(params, state)
    api = APIS.get(method)
    if api is None:
        raise platform_error(22, None, f"不存在的方法名 {method[:80]}")
    api_ban = state.limiter.api_banned(method, state.monotonic())
    if api_ban is not None:
        raise platform_error(7, api_ban[0], ban_message(api_ban[1]))
    quota_left = state.quota.spend(app_key, state.wall())
    if quota_left is not None:
        raise platform_error(7, BAN_SUB_CODE, ban_message(quota_left))
    if api.needs_session:
        _check_session(params, state)
        if api.writes and not state.tokens.write_valid(params["session"].strip(), state.wall()):
            # The platform's answer to a lapsed write permission is UNCONFIRMED: the
            # sandbox answers 27, with its reason.
            raise platform_error(
                27, "invalid-sessionkey", "写权限已过期 (w1_expires_in passed): re-authorize"
            )
    return api.parse(params)
