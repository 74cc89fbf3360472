"""Reading a TOP request's parameters: form parsing and the typed per-API parameter checks.

:func:`read_params` collects a request's parameters (query string overlaid with the form
body). The ``req_*``/``opt_*`` helpers and friends read one parameter each and raise
TOP's 40 ``isv.missing-parameter:NAME`` or 41 ``isv.invalid-parameter:NAME``
(:func:`missing_param`, :func:`invalid_param`); :func:`platform_error` builds any other
platform-level :class:`~connector.sandbox.model.TopFault` by code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Final, cast
from urllib.parse import unquote_plus

from aiohttp import web

from connector.sandbox.model import TopFault, UpdateType
from connector.taobao.protocol import CHINA_TZ, PLATFORM_ERRORS, TIMESTAMP_FORMAT

__all__ = [
    "fields_param",
    "invalid_param",
    "missing_param",
    "opt_int",
    "opt_str",
    "order_param",
    "paging_params",
    "pairs_param",
    "parse_form",
    "platform_error",
    "read_params",
    "req_int",
    "req_str",
    "time_param",
    "to_int",
    "update_type_param",
]

_INT_RE: Final = re.compile(r"-?[0-9]{1,19}")
_INT64_MAX: Final = 2**63 - 1


def parse_form(text: str, into: dict[str, str]) -> None:
    """``application/x-www-form-urlencoded`` into ``into`` (a repeated name: the last wins).

    ``urllib.parse.parse_qsl`` does the same but unquotes every piece; skipping the pieces
    with nothing to unquote is most of the gateway's parsing time on the hot path.
    """
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name, errors="replace")
        if "%" in value or "+" in value:
            value = unquote_plus(value, errors="replace")
        into[name] = value


async def read_params(request: web.Request) -> dict[str, str]:
    """Query-string parameters overlaid with form-body ones (the body wins)."""
    params: dict[str, str] = {}
    parse_form(request.rel_url.raw_query_string, params)
    if request.method != "POST" or not request.body_exists:
        return params
    try:
        ctype = request.content_type
        if ctype == "multipart/form-data":
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        elif ctype in ("application/x-www-form-urlencoded", "application/octet-stream", ""):
            # aiohttp reports a missing Content-Type as application/octet-stream.
            text = (await request.read()).decode("utf-8", "replace")
            parse_form(text, params)
    except web.HTTPRequestEntityTooLarge:
        raise platform_error(43, None, "request body too large") from None
    except Exception as exc:
        # aiohttp's multipart reader raises several types on malformed input: all the
        # client's fault, so all answered as TOP's "Parameter Error".
        raise platform_error(43, None, f"cannot parse the request body: {exc}"[:200]) from None
    return params


# ---------------------------------------------------------------------- errors


def platform_error(code: int, sub_code: str | None = None, sub_msg: str | None = None) -> TopFault:
    """A platform-level error by its TOP code, with the platform's own ``msg``."""
    return TopFault(code, PLATFORM_ERRORS[code], sub_code, sub_msg)


def missing_param(name: str) -> TopFault:
    return TopFault(40, PLATFORM_ERRORS[40], f"isv.missing-parameter:{name}", f"缺少参数 {name}")


def invalid_param(name: str, why: str) -> TopFault:
    return TopFault(41, PLATFORM_ERRORS[41], f"isv.invalid-parameter:{name}", why)


# ---------------------------------------------------------------------- one parameter


def req_str(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise missing_param(name)
    return value


def opt_str(params: Mapping[str, str], name: str) -> str | None:
    return params.get(name, "").strip() or None


def to_int(text: str, name: str, minimum: int | None = None) -> int:
    if not _INT_RE.fullmatch(text) or abs(int(text)) > _INT64_MAX:
        raise invalid_param(name, f"{name} 必须是整数 (got {text[:40]!r})")
    value = int(text)
    if minimum is not None and value < minimum:
        raise invalid_param(name, f"{name} 不能小于 {minimum}")
    return value


def req_int(params: Mapping[str, str], name: str, minimum: int | None = None) -> int:
    return to_int(req_str(params, name), name, minimum)


def opt_int(params: Mapping[str, str], name: str, minimum: int | None = None) -> int | None:
    text = opt_str(params, name)
    return None if text is None else to_int(text, name, minimum)


def update_type_param(params: Mapping[str, str]) -> UpdateType:
    value = opt_int(params, "type")
    if value is None:
        return 1
    if value not in (1, 2):
        raise invalid_param("type", "type 只能是 1 (全量) 或 2 (增量)")
    return cast(UpdateType, value)


def fields_param(params: Mapping[str, str]) -> frozenset[str]:
    return frozenset(f.strip() for f in req_str(params, "fields").split(",") if f.strip())


def time_param(params: Mapping[str, str], name: str) -> datetime | None:
    text = opt_str(params, name)
    if text is None:
        return None
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=CHINA_TZ)
    except ValueError:
        raise invalid_param(name, f'{name} 格式应为 "yyyy-MM-dd HH:mm:ss"') from None


def pairs_param(text: str, name: str, numeric_key: bool) -> list[tuple[int | str, int]]:
    pairs: list[tuple[int | str, int]] = []
    for chunk in filter(None, (c.strip() for c in text.split(";"))):
        key, sep, qty = chunk.rpartition(":")
        if not sep or not key:
            raise invalid_param(name, f"{name} 格式应为 id:数量;id:数量 (bad entry {chunk[:40]!r})")
        parsed: int | str = to_int(key, name, 1) if numeric_key else key
        pairs.append((parsed, to_int(qty, name)))
    if len(pairs) > 20:
        raise invalid_param(name, f"{name} 最多 20 个 SKU (got {len(pairs)})")
    return pairs


def paging_params(params: Mapping[str, str], max_page_no: int | None) -> tuple[int, int]:
    page_no = opt_int(params, "page_no", 1) or 1
    page_size = opt_int(params, "page_size", 1) or 40
    if page_size > 200:
        raise invalid_param("page_size", "page_size 最大为 200")
    if max_page_no is not None and page_no > max_page_no:
        raise invalid_param("page_no", f"page_no 最大为 {max_page_no}")
    if page_no * page_size > 100_000:
        raise invalid_param("page_no", "page_no*page_size 不能超过 10万")
    return page_no, page_size


def order_param(params: Mapping[str, str], allowed: frozenset[str]) -> tuple[str, bool]:
    text = opt_str(params, "order_by") or "list_time:desc"
    name, _, direction = text.partition(":")
    if name not in allowed or direction not in ("", "asc", "desc"):
        raise invalid_param("order_by", f"order_by 应为 {'|'.join(sorted(allowed))}:asc|desc")
    return name, direction != "asc"
