"""TOP wire protocol facts shared by the client and the sandbox gateway: pure, no I/O.

Sources are in ``shared/reference/taobao-top-api.md`` (§1 system parameters, §2 envelope).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

__all__ = [
    "API_VERSION",
    "CHINA_TZ",
    "PLATFORM_ERRORS",
    "SYSTEM_PARAMS",
    "TIMESTAMP_FORMAT",
    "format_timestamp",
    "parse_ban_seconds",
    "parse_timestamp",
    "response_key",
    "unwrap_list",
]

# China has used UTC+8 without daylight saving since 1991, so a fixed offset is exact.
CHINA_TZ: Final = timezone(timedelta(hours=8), "Asia/Shanghai")
TIMESTAMP_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
API_VERSION: Final = "2.0"

SYSTEM_PARAMS: Final = frozenset(
    {
        "method",
        "app_key",
        "session",
        "timestamp",
        "format",
        "v",
        "sign_method",
        "sign",
        "simplify",
        "partner_id",
        "target_app_key",
    }
)

# Platform error codes below 100 with the gateway's message (reference §2.3).
PLATFORM_ERRORS: Final[Mapping[int, str]] = {
    3: "Upload Fail",
    4: "User Call Limited",
    5: "Session Call Limited",
    6: "Partner Call Limited",
    7: "App Call Limited",
    8: "App Call Exceeds Limited Frequency",
    9: "Http Action Not Allowed",
    10: "Service Currently Unavailable",
    11: "Insufficient ISV Permissions",
    12: "Insufficient User Permissions",
    13: "Insufficient Partner Permissions",
    15: "Remote service error",
    21: "Missing Method",
    22: "Invalid Method",
    23: "Invalid Format",
    24: "Missing Signature",
    25: "Invalid Signature",
    26: "Missing Session",
    27: "Invalid Session",
    28: "Missing App Key",
    29: "Invalid App Key",
    30: "Missing Timestamp",
    31: "Invalid Timestamp",
    32: "Missing Version",
    33: "Invalid Version",
    34: "Unsupported Version",
    40: "Missing Required Arguments",
    41: "Invalid Arguments",
    42: "Forbidden Request",
    43: "Parameter Error",
}

_BAN_RE: Final = re.compile(r"ban will last for (\d+) more seconds?", re.IGNORECASE)


def response_key(method: str) -> str:
    """The success envelope's root key: dots to underscores, a leading ``taobao_`` stripped."""
    snake = method.replace(".", "_")
    return f"{snake.removeprefix('taobao_')}_response"


def format_timestamp(moment: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in China time, as the ``timestamp`` parameter wants."""
    return moment.astimezone(CHINA_TZ).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Parse a TOP datetime (China time) or epoch milliseconds into an aware UTC datetime."""
    stripped = text.strip()
    if stripped.isdigit():
        return datetime.fromtimestamp(int(stripped) / 1000, tz=UTC)
    naive = datetime.strptime(stripped, TIMESTAMP_FORMAT)
    return naive.replace(tzinfo=CHINA_TZ).astimezone(UTC)


def parse_ban_seconds(sub_msg: str | None) -> int | None:
    """Read the ban time out of ``"This ban will last for N more seconds"``, if present."""
    if not sub_msg:
        return None
    match = _BAN_RE.search(sub_msg)
    return int(match.group(1)) if match else None


def unwrap_list(value: Any, singular: str) -> list[Any]:
    """Return a TOP list field as a plain list.

    With ``simplify=false`` (the default) lists come wrapped as ``{"items": {"item": [...]}}``;
    with ``simplify=true`` they are plain arrays. An absent list is empty.
    """
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        inner = value.get(singular)
        if inner is None:
            return []
        return inner if isinstance(inner, list) else [inner]
    raise TypeError(f"expected a list or a {singular!r} wrapper, got {type(value).__name__}")
