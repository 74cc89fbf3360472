"""Error classification for TOP responses: pure, table-driven.

Rules (reference §2.4): classify by ``sub_code`` first, because the numeric ``code`` of
"Remote service error" varies (15, 50, 520, 530). ``isp.*`` is the platform's (retry after
a while, except the few it marks as not retryable); ``isv.*`` is the caller's (do not
retry). Codes below 100 are gateway checks: call limits, session, credentials, arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, Final

from connector.errors import (
    TaobaoAuthError,
    TaobaoCallerError,
    TaobaoCallLimited,
    TaobaoError,
    TaobaoFullUpdateForbidden,
    TaobaoPlatformError,
    TaobaoSessionError,
    TaobaoTransientError,
)
from connector.taobao.protocol import PLATFORM_ERRORS, parse_ban_seconds

__all__ = ["ErrorClass", "api_scoped_ban", "classify", "error_from_response"]

# Call limits of one API, not the whole app (reference §6): the ban waits on that API only.
_API_BANS: Final = (
    "accesscontrol.limited-by-api-access-count",
    "accesscontrol.limited-by-app-api-access-count",
)


def api_scoped_ban(sub_code: str | None) -> bool:
    """Whether a call limit bans only the API called (else the whole app)."""
    return (sub_code or "").startswith(_API_BANS)


class ErrorClass(Enum):
    """What the caller should do about an error."""

    TRANSIENT = "transient"  # back off and retry
    CALL_LIMITED = "call_limited"  # wait out the ban, pause consumption
    SESSION = "session"  # refresh the access token, retry once
    AUTH = "auth"  # configuration is wrong
    CALLER = "caller"  # the request is wrong
    FULL_UPDATE_FORBIDDEN = "full_update_forbidden"  # switch to incremental updates
    PLATFORM = "platform"  # platform error that retrying will not fix


_CALL_LIMIT_CODES: Final = frozenset({4, 5, 6, 7, 8})
_SESSION_CODES: Final = frozenset({26, 27, 53})
_AUTH_CODES: Final = frozenset({11, 12, 13, 24, 25, 28, 29, 31})  # 31: clock skew
_TRANSIENT_CODES: Final = frozenset({10})

# isp sub codes the platform's own table marks "do not retry".
_ISP_NOT_RETRYABLE: Final = (
    "isp.null-pointer-exception",
    "isp.top-parse-error",
    "isp.top-mapping-parse-error",
)
# isv sub codes that are in truth contention on the platform side (community retry sets).
_ISV_RETRYABLE: Final = (
    "isv.item-update-service-error:IC_OPTIMISTIC_LOCKING_CONFLICT",
    "isv.item-listing-service-error:IC_CONCURRENT_MODIFY_FORBIDDEN",
)
# Item locks that refuse full (type 1) stock updates, as the platform documents them
# (reference §3.1: a presale item takes increments only). Nothing documents a campaign
# lock's code: such a refusal is a caller error like any other isv.* (the projection parks
# the item with an alert until its next change).
_FULL_UPDATE_LOCKS: Final = ("isv.item-is-presale",)

_HINTS: Final[Mapping[int, str]] = {
    11: "the app lacks permission for this API: check its API packages in the console",
    12: "the seller has not granted this permission: authorize the app again",
    24: "no signature was sent",
    25: "the signature was rejected: check TAOBAO_APP_SECRET and TAOBAO_SIGN_METHOD",
    28: "no app key was sent: set TAOBAO_APP_KEY",
    29: "the app key was rejected: check TAOBAO_APP_KEY",
    31: "the timestamp was rejected: check this machine's clock (10 minutes' skew allowed)",
}


def classify(code: int | None, sub_code: str | None) -> ErrorClass:
    """Decide what an ``error_response`` means for the caller."""
    sub = sub_code or ""
    if code in _CALL_LIMIT_CODES or sub.startswith("accesscontrol."):
        return ErrorClass.CALL_LIMITED
    if code in _SESSION_CODES or sub in {"invalid-sessionkey", "session-expired"}:
        return ErrorClass.SESSION
    if sub.startswith(_FULL_UPDATE_LOCKS):
        return ErrorClass.FULL_UPDATE_FORBIDDEN
    if sub.startswith(_ISV_RETRYABLE):
        return ErrorClass.TRANSIENT
    if sub.startswith("isp."):
        return ErrorClass.PLATFORM if sub.startswith(_ISP_NOT_RETRYABLE) else ErrorClass.TRANSIENT
    # Gateway checks come before isv.*: code 11 arrives as isv.permission-api-package-limit,
    # and the rule "isv.* is the caller's" only covers code 15 and business codes (§2.4).
    if code in _AUTH_CODES:
        return ErrorClass.AUTH
    if sub.startswith("isv."):
        return ErrorClass.CALLER
    if code in _TRANSIENT_CODES:
        return ErrorClass.TRANSIENT
    if code is not None and code < 100 and code != 15:
        return ErrorClass.CALLER
    # "Remote service error" (15/50/520/530…) with no sub code: the platform's side.
    return ErrorClass.TRANSIENT


_CLASS_TO_ERROR: Final[Mapping[ErrorClass, type[TaobaoError]]] = {
    ErrorClass.TRANSIENT: TaobaoTransientError,
    ErrorClass.SESSION: TaobaoSessionError,
    ErrorClass.AUTH: TaobaoAuthError,
    ErrorClass.CALLER: TaobaoCallerError,
    ErrorClass.FULL_UPDATE_FORBIDDEN: TaobaoFullUpdateForbidden,
    ErrorClass.PLATFORM: TaobaoPlatformError,
}


def _as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def error_from_response(
    method: str, body: Mapping[str, Any], *, default_ban_s: float, attempts: int = 1
) -> TaobaoError:
    """Turn an ``error_response`` object into the matching typed exception."""
    code = _as_int(body.get("code"))
    sub_code = _as_text(body.get("sub_code"))
    sub_msg = _as_text(body.get("sub_msg"))
    msg = _as_text(body.get("msg")) or PLATFORM_ERRORS.get(code or 0, "error")
    fields: dict[str, Any] = {
        "method": method,
        "code": code,
        "sub_code": sub_code,
        "sub_msg": sub_msg,
        "request_id": _as_text(body.get("request_id")),
        "attempts": attempts,
    }
    kind = classify(code, sub_code)
    if kind is ErrorClass.CALL_LIMITED:
        ban_s = parse_ban_seconds(sub_msg)
        # No ban time in the message: wait the configured default rather than hammer.
        retry_after_s = float(default_ban_s if ban_s is None else ban_s)
        limited = TaobaoCallLimited(msg, retry_after_s=retry_after_s, **fields)
        limited.app_wide = not api_scoped_ban(sub_code)
        return limited
    hint = _HINTS.get(code or 0)
    return _CLASS_TO_ERROR[kind](f"{msg} ({hint})" if hint else msg, **fields)
