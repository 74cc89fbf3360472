"""Error classification (reference §2.2-§2.4) and the error tree of ``connector.errors``."""

from __future__ import annotations

from typing import Any

import pytest

from connector.errors import (
    ConnectorError,
    TaobaoAuthError,
    TaobaoCallerError,
    TaobaoCallLimited,
    TaobaoError,
    TaobaoFullUpdateForbidden,
    TaobaoPlatformError,
    TaobaoSessionError,
    TaobaoTransientError,
    redact,
)
from connector.taobao.classify import ErrorClass, classify, error_from_response

METHOD = "taobao.item.quantity.update"
DEFAULT_BAN_S = 60.0

# (code, sub_code, class, exception type)
TABLE: list[tuple[Any, str | None, ErrorClass, type[TaobaoError]]] = [
    # call limits
    (7, "accesscontrol.limited-by-app-access-count", ErrorClass.CALL_LIMITED, TaobaoCallLimited),
    (
        7,
        "accesscontrol.limited-by-dynamic-access-count",
        ErrorClass.CALL_LIMITED,
        TaobaoCallLimited,
    ),
    (7, None, ErrorClass.CALL_LIMITED, TaobaoCallLimited),
    (4, None, ErrorClass.CALL_LIMITED, TaobaoCallLimited),
    (5, None, ErrorClass.CALL_LIMITED, TaobaoCallLimited),
    (6, None, ErrorClass.CALL_LIMITED, TaobaoCallLimited),
    (8, None, ErrorClass.CALL_LIMITED, TaobaoCallLimited),
    (15, "accesscontrol.limited-by-api-access-count", ErrorClass.CALL_LIMITED, TaobaoCallLimited),
    # session
    (26, None, ErrorClass.SESSION, TaobaoSessionError),
    (27, None, ErrorClass.SESSION, TaobaoSessionError),
    (27, "invalid-sessionkey", ErrorClass.SESSION, TaobaoSessionError),
    (53, None, ErrorClass.SESSION, TaobaoSessionError),
    (None, "invalid-sessionkey", ErrorClass.SESSION, TaobaoSessionError),
    (15, "session-expired", ErrorClass.SESSION, TaobaoSessionError),
    # credentials and permissions
    (11, None, ErrorClass.AUTH, TaobaoAuthError),
    (12, None, ErrorClass.AUTH, TaobaoAuthError),
    (13, None, ErrorClass.AUTH, TaobaoAuthError),
    (24, None, ErrorClass.AUTH, TaobaoAuthError),
    (25, None, ErrorClass.AUTH, TaobaoAuthError),
    (28, None, ErrorClass.AUTH, TaobaoAuthError),
    (29, None, ErrorClass.AUTH, TaobaoAuthError),
    # the request itself
    (40, None, ErrorClass.CALLER, TaobaoCallerError),
    (41, None, ErrorClass.CALLER, TaobaoCallerError),
    (21, None, ErrorClass.CALLER, TaobaoCallerError),
    (22, None, ErrorClass.CALLER, TaobaoCallerError),
    (31, None, ErrorClass.AUTH, TaobaoAuthError),  # the clock: an operator must act
    (42, None, ErrorClass.CALLER, TaobaoCallerError),
    (15, "isv.item-not-exist:invalid-numIid-or-iid", ErrorClass.CALLER, TaobaoCallerError),
    (15, "isv.invalid-parameter:quantity", ErrorClass.CALLER, TaobaoCallerError),
    (50, "isv.invalid-parameter", ErrorClass.CALLER, TaobaoCallerError),
    (15, "isv.SMS_SIGNATURE_ILLEGAL", ErrorClass.CALLER, TaobaoCallerError),
    (
        530,
        "isv.item-listing-service-error:GENERIC_FAILURE-tmall",
        ErrorClass.CALLER,
        TaobaoCallerError,
    ),
    # item locks: only incremental updates
    (
        15,
        "isv.item-is-presale:invalid-presale-tags-id-tmall",
        ErrorClass.FULL_UPDATE_FORBIDDEN,
        TaobaoFullUpdateForbidden,
    ),
    # No platform source names a campaign lock's code: it is a refusal like any other.
    (15, "isv.item-is-campaign:locked-by-campaign", ErrorClass.CALLER, TaobaoCallerError),
    # transient: retry with backoff
    (15, "isp.remote-service-timeout", ErrorClass.TRANSIENT, TaobaoTransientError),
    (50, "isp.remote-service-timeout", ErrorClass.TRANSIENT, TaobaoTransientError),
    (520, "isp.remote-service-timeout", ErrorClass.TRANSIENT, TaobaoTransientError),
    (15, "isp.top-remote-connection-error", ErrorClass.TRANSIENT, TaobaoTransientError),
    (15, "isp.top-remote-connection-timeout-tmall", ErrorClass.TRANSIENT, TaobaoTransientError),
    (15, "isp.unknown-error", ErrorClass.TRANSIENT, TaobaoTransientError),
    (
        15,
        "isp.item-update-service-error:GENERIC_FAILURE",
        ErrorClass.TRANSIENT,
        TaobaoTransientError,
    ),
    (
        15,
        "isv.item-update-service-error:IC_OPTIMISTIC_LOCKING_CONFLICT",
        ErrorClass.TRANSIENT,
        TaobaoTransientError,
    ),
    (
        15,
        "isv.item-listing-service-error:IC_CONCURRENT_MODIFY_FORBIDDEN",
        ErrorClass.TRANSIENT,
        TaobaoTransientError,
    ),
    (10, None, ErrorClass.TRANSIENT, TaobaoTransientError),
    (15, None, ErrorClass.TRANSIENT, TaobaoTransientError),
    (520, None, ErrorClass.TRANSIENT, TaobaoTransientError),
    (530, None, ErrorClass.TRANSIENT, TaobaoTransientError),
    (None, None, ErrorClass.TRANSIENT, TaobaoTransientError),
    # platform errors that retrying will not fix
    (15, "isp.null-pointer-exception", ErrorClass.PLATFORM, TaobaoPlatformError),
    (15, "isp.top-parse-error", ErrorClass.PLATFORM, TaobaoPlatformError),
    (15, "isp.top-mapping-parse-error", ErrorClass.PLATFORM, TaobaoPlatformError),
]


@pytest.mark.parametrize(("code", "sub_code", "kind", "error_type"), TABLE)
def test_classify(
    code: int | None, sub_code: str | None, kind: ErrorClass, error_type: type[TaobaoError]
) -> None:
    assert classify(code, sub_code) is kind


@pytest.mark.parametrize(("code", "sub_code", "kind", "error_type"), TABLE)
def test_error_from_response_type_and_fields(
    code: int | None, sub_code: str | None, kind: ErrorClass, error_type: type[TaobaoError]
) -> None:
    body: dict[str, Any] = {"code": code, "msg": "Remote service error", "request_id": "ej6ptuzf"}
    if sub_code is not None:
        body |= {"sub_code": sub_code, "sub_msg": "系统错误，请稍后再试"}
    error = error_from_response(METHOD, body, default_ban_s=DEFAULT_BAN_S, attempts=3)
    assert type(error) is error_type
    assert isinstance(error, ConnectorError)
    assert (error.method, error.code, error.sub_code) == (METHOD, code, sub_code)
    assert error.request_id == "ej6ptuzf"
    assert error.attempts == 3
    assert error.sub_msg == ("系统错误，请稍后再试" if sub_code else None)
    text = str(error)
    assert METHOD in text
    assert "request_id=ej6ptuzf" in text
    if code is not None:
        assert f"code={code}" in text
    if sub_code is not None:
        assert f"sub_code={sub_code}" in text


def test_call_limited_reads_the_ban_time() -> None:
    body = {
        "code": 7,
        "msg": "App Call Limited",
        "sub_code": "accesscontrol.limited-by-app-access-count",
        "sub_msg": "This ban will last for 31062 more seconds",
        "request_id": "rxvsf5lo4ufl",
    }
    error = error_from_response(METHOD, body, default_ban_s=DEFAULT_BAN_S)
    assert isinstance(error, TaobaoCallLimited)
    assert error.retry_after_s == 31062
    assert error.sub_msg == "This ban will last for 31062 more seconds"
    assert "31062" in str(error)


@pytest.mark.parametrize(
    "sub_msg", [None, "", "App Call Limited", "This ban will last for a while"]
)
def test_call_limited_without_ban_time_uses_the_default(sub_msg: str | None) -> None:
    body = {"code": 7, "msg": "App Call Limited", "sub_code": "accesscontrol.x", "sub_msg": sub_msg}
    error = error_from_response(METHOD, body, default_ban_s=42.5)
    assert isinstance(error, TaobaoCallLimited)
    assert error.retry_after_s == 42.5


def test_full_update_forbidden_is_a_caller_error() -> None:
    body = {"code": 15, "sub_code": "isv.item-is-presale:invalid-presale-tags-id-tmall"}
    error = error_from_response(METHOD, body, default_ban_s=DEFAULT_BAN_S)
    assert isinstance(error, TaobaoFullUpdateForbidden)
    assert isinstance(error, TaobaoCallerError)


@pytest.mark.parametrize(
    ("code", "names"),
    [
        (25, ["TAOBAO_APP_SECRET", "TAOBAO_SIGN_METHOD"]),
        (29, ["TAOBAO_APP_KEY"]),
        (28, ["TAOBAO_APP_KEY"]),
        (11, ["permission", "API packages"]),
        (31, ["clock"]),
    ],
)
def test_messages_carry_a_hint(code: int, names: list[str]) -> None:
    error = error_from_response(METHOD, {"code": code}, default_ban_s=DEFAULT_BAN_S)
    for name in names:
        assert name in str(error)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"code": 27}, "Invalid Session"),  # platform table when msg is absent
        ({"code": 25, "msg": "Invalid signature"}, "Invalid signature"),  # the gateway's own
        ({"code": 999}, "error"),
        ({}, "error"),
    ],
)
def test_message_falls_back_to_the_platform_table(body: dict[str, Any], message: str) -> None:
    error = error_from_response(METHOD, body, default_ban_s=DEFAULT_BAN_S)
    assert error.args[0].startswith(message)


@pytest.mark.parametrize(
    ("body", "code", "sub_code", "request_id"),
    [
        ({"code": "27", "sub_code": "invalid-sessionkey"}, 27, "invalid-sessionkey", None),
        ({"code": "n/a", "sub_code": ""}, None, None, None),
        ({"code": 15, "sub_code": "", "request_id": ""}, 15, None, None),
        ({"code": 15, "request_id": 12345}, 15, None, "12345"),
    ],
)
def test_loose_json_types(
    body: dict[str, Any], code: int | None, sub_code: str | None, request_id: str | None
) -> None:
    error = error_from_response(METHOD, body, default_ban_s=DEFAULT_BAN_S)
    assert (error.code, error.sub_code, error.request_id) == (code, sub_code, request_id)


def test_str_without_optional_fields() -> None:
    error = TaobaoTransientError("network error", method=METHOD)
    assert str(error) == f"{METHOD}: network error request_id=-"


def test_permission_error_with_isv_sub_code_is_auth() -> None:
    body = {
        "code": 11,
        "msg": "Insufficient isv permissions",
        "sub_code": "isv.permission-api-package-limit",
    }
    error = error_from_response(METHOD, body, default_ban_s=DEFAULT_BAN_S)
    assert isinstance(error, TaobaoAuthError)


# --- redact ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("token abcd1234 rejected", ["abcd1234"], "token *** rejected"),
        ("abcd1234/abcd1234", ["abcd1234"], "***/***"),
        ("key=s3cr3t rt=r3fr3sh", ["s3cr3t", "r3fr3sh"], "key=*** rt=***"),
        ("nothing to hide", ["s3cr3t"], "nothing to hide"),
        ("session None", [None, ""], "session None"),
        ("a abc abcd", ["a", "abc"], "a abc abcd"),  # too short to redact safely
        ("密钥值密钥值", ["密钥值密"], "***钥值"),
        ("", ["s3cr3t"], ""),
    ],
)
def test_redact(text: str, secrets: list[str | None], expected: str) -> None:
    assert redact(text, secrets) == expected


def test_redact_accepts_any_iterable() -> None:
    assert redact("x s3cr3t y", (s for s in ["s3cr3t"])) == "x *** y"


def test_redact_secret_containing_another_is_fully_hidden() -> None:
    text = "refresh token abcd1234-rt-5678 refused"
    assert "-rt-5678" not in redact(text, ["abcd1234", "abcd1234-rt-5678"])
