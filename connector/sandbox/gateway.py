"""The sandbox TOP gateway: an aiohttp app, a thin shell over the pure catalog and fault code.

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
    every item with every field and its SKUs, the warehouse records, active bans, the fault
    config and the ``zero_onsale`` mode.
``GET /sandbox/calls?since=SEQ&limit=N``
    logged calls with ``seq > since`` (at most ``limit``, default 10000) and ``next`` (the
    last seq returned, to pass back as ``since``). Each call: ``seq``, ``time``, ``method``,
    ``app_key``, ``params`` (``sign``, ``session``, ``refresh_token``, ``client_secret``
    shown as ``***``, long values truncated), ``code``, ``sub_code``, ``request_id``,
    ``applied`` (the state changed), ``fault`` (null, ``error``, ``timeout``,
    ``hang_after_apply``, ``drop_after_apply``), ``duration_ms``. ``/token`` calls are logged
    with method ``/token`` and the HTTP status as ``code``.
``POST /sandbox/reset``
    back to the start-up state: catalog reloaded (or ``{"catalog": {...}}`` from the body),
    call log, bans and limiter cleared, configured tokens restored, fault config restored
    (or ``{"faults": {...}}`` from the body) and the rng re-seeded.
``GET|POST /sandbox/faults``
    read or replace the fault config (a :class:`~connector.sandbox.faults.FaultConfig` JSON).
``POST /sandbox/items/{num_iid}``
    a merchant's edit in the seller centre, bypassing TOP rules: any of ``approve_status``,
    ``lock``, ``quantity`` (item without SKUs), ``sku_quantities`` (``{"sku_id": n}``).
``POST /sandbox/tokens/expire``
    every issued access token expires now (the next API call gets 27).
``GET /healthz``
    200 ``{"status": "ok"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import unquote_plus

from aiohttp import web

from connector.sandbox.catalog import (
    BANNERS,
    ORDER_FIELDS,
    ApproveStatus,
    Catalog,
    CatalogError,
    Item,
    Lock,
    TopFault,
    UpdateType,
    item_to_json,
    load_catalog,
    parse_catalog_text,
    sku_to_json,
)
from connector.sandbox.faults import (
    BAN_SUB_CODE,
    CallLimiter,
    FaultConfig,
    FaultDecision,
    ban_message,
    decide,
)
from connector.taobao.protocol import (
    API_VERSION,
    CHINA_TZ,
    PLATFORM_ERRORS,
    TIMESTAMP_FORMAT,
    format_timestamp,
    parse_timestamp,
    response_key,
)
from connector.taobao.signing import SIGN_METHODS, verify

if TYPE_CHECKING:
    from connector.sandbox.server import SandboxConfig

__all__ = [
    "APIS",
    "REDACTED_PARAMS",
    "STATE_KEY",
    "Api",
    "CallContext",
    "CallLog",
    "SandboxState",
    "TokenStore",
    "build_app",
    "check_call",
    "load_configured_catalog",
    "new_request_id",
    "parse_form",
    "redact",
]

logger = logging.getLogger(__name__)

REDACTED_PARAMS: Final = frozenset({"sign", "session", "refresh_token", "client_secret"})
JSON_CONTENT_TYPE: Final = "application/json;charset=UTF-8"
TOKEN_PATH: Final = "/token"  # noqa: S105 - a URL path, not a secret
_JSON_HEADERS: Final = {"Content-Type": JSON_CONTENT_TYPE}
_BASE36: Final = "0123456789abcdefghijklmnopqrstuvwxyz"
_INT_RE: Final = re.compile(r"-?[0-9]{1,19}")
_VERSION_RE: Final = re.compile(r"[0-9]+(\.[0-9]+)*")
_LOG_VALUE_MAX: Final = 256
_INT64_MAX: Final = 2**63 - 1
_SELLER_ID: Final = "2200000000001"
_SELLER_NICK: Final = "sandbox_b_01"

Body = dict[str, Any]
Runner = Callable[["CallContext"], Body]


def new_request_id(rng: random.Random) -> str:
    """A random 13-character base36 id, like the platform's ``request_id`` (not a secret)."""
    return "".join(rng.choices(_BASE36, k=13))


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


# ====================================================================== state


class TokenStore:
    """Issued access and refresh tokens with their expiry (epoch seconds)."""

    def __init__(self, session_ttl_s: float, refresh_ttl_s: float) -> None:
        self._session_ttl = session_ttl_s
        self._refresh_ttl = refresh_ttl_s
        self._access: dict[str, float] = {}
        self._refresh: dict[str, float] = {}

    def restore(self, session: str, refresh_token: str, now: float) -> None:
        self._access = {session: now + self._session_ttl}
        self._refresh = {refresh_token: now + self._refresh_ttl} if refresh_token else {}

    def session_valid(self, token: str, now: float) -> bool:
        expiry = self._access.get(token)
        return expiry is not None and now < expiry

    def expire_all(self) -> int:
        self._access = dict.fromkeys(self._access, 0.0)
        return len(self._access)

    def rotate(self, refresh_token: str, now: float) -> Body | None:
        """Swap a valid refresh token for a new token pair; ``None`` if it is not valid."""
        expiry = self._refresh.pop(refresh_token, None)
        if expiry is None or now >= expiry:
            return None
        access, refresh = secrets.token_hex(24), secrets.token_hex(24)
        self._access[access] = now + self._session_ttl
        self._refresh[refresh] = now + self._refresh_ttl
        expires_in = math.floor(self._session_ttl)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "refresh_token": refresh,
            "re_expires_in": math.floor(self._refresh_ttl),
            "r1_expires_in": expires_in,
            "w1_expires_in": expires_in,
            "taobao_user_id": _SELLER_ID,
            "taobao_user_nick": _SELLER_NICK,
        }


class CallLog:
    """A bounded, numbered log of calls (oldest dropped first)."""

    def __init__(self, size: int) -> None:
        self._entries: deque[Body] = deque(maxlen=max(1, size))
        self._seq = 0

    def record(self, entry: Body) -> None:
        self._seq += 1
        self._entries.append({"seq": self._seq, **entry})

    def since(self, seq: int, limit: int) -> tuple[list[Body], int]:
        """Entries after ``seq`` (times as China-time ISO strings) and the last seq returned."""
        chosen = [e for e in self._entries if e["seq"] > seq][:limit]
        shown = [{**e, "time": _iso(e["time"])} for e in chosen]
        return shown, (chosen[-1]["seq"] if chosen else max(seq, 0))

    def clear(self) -> None:
        self._entries.clear()
        self._seq = 0


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, CHINA_TZ).isoformat(timespec="milliseconds")


def redact(params: Mapping[str, str]) -> dict[str, str]:
    """Params safe to show: secrets masked, long values cut so the log stays bounded."""
    shown: dict[str, str] = {}
    for key, value in params.items():
        if key in REDACTED_PARAMS:
            shown[key] = "***"
        elif len(value) > _LOG_VALUE_MAX:
            shown[key] = f"{value[:_LOG_VALUE_MAX]}…(+{len(value) - _LOG_VALUE_MAX} chars)"
        else:
            shown[key] = value
    return shown


def load_configured_catalog(path: Path | None) -> Catalog:
    """The catalog file at ``path`` or the built-in demo one; :class:`CatalogError` if bad."""
    if path is None:
        text = resources.files("connector.sandbox").joinpath("demo_catalog.json").read_text()
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogError(f"cannot read catalog file {path}: {exc}") from None
    return parse_catalog_text(text)


@dataclass
class SandboxState:
    """Everything the gateway knows; owned by one app, touched only on its event loop."""

    config: SandboxConfig
    catalog: Catalog = field(init=False)
    faults: FaultConfig = field(init=False)
    rng: random.Random = field(init=False)
    tokens: TokenStore = field(init=False)
    limiter: CallLimiter = field(init=False)
    calls: CallLog = field(init=False)
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    ids: random.Random = field(default_factory=random.Random)  # request ids only
    # Clients send the same timestamp text for a whole second: parse it once.
    _last_timestamp: tuple[str, datetime] = field(
        default=("", datetime.min.replace(tzinfo=UTC)), init=False, repr=False
    )

    def __post_init__(self) -> None:
        self.tokens = TokenStore(self.config.session_ttl_s, self.config.refresh_ttl_s)
        self.limiter = CallLimiter(self.config.qps, self.config.ban_s)
        self.calls = CallLog(self.config.call_log_size)
        self.reset()

    def reset(self, catalog: Catalog | None = None, faults: FaultConfig | None = None) -> None:
        self.catalog = catalog or load_configured_catalog(self.config.catalog_path)
        self.faults = faults or self.config.faults
        self.rng = random.Random(self.config.seed)  # noqa: S311 - fault draws, not crypto
        self.tokens.restore(self.config.session, self.config.refresh_token, self.wall())
        self.limiter.reset()
        self.calls.clear()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall(), tz=UTC)

    def parse_timestamp(self, text: str) -> datetime:
        if self._last_timestamp[0] != text:
            self._last_timestamp = (text, parse_timestamp(text))
        return self._last_timestamp[1]


STATE_KEY: Final = web.AppKey("sandbox_state", SandboxState)


# ====================================================================== parameters


def _missing(name: str) -> TopFault:
    return TopFault(40, PLATFORM_ERRORS[40], f"isv.missing-parameter:{name}", f"缺少参数 {name}")


def _invalid(name: str, why: str) -> TopFault:
    return TopFault(41, PLATFORM_ERRORS[41], f"isv.invalid-parameter:{name}", why)


def _req_str(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise _missing(name)
    return value


def _opt_str(params: Mapping[str, str], name: str) -> str | None:
    return params.get(name, "").strip() or None


def _to_int(text: str, name: str, minimum: int | None = None) -> int:
    if not _INT_RE.fullmatch(text) or abs(int(text)) > _INT64_MAX:
        raise _invalid(name, f"{name} 必须是整数 (got {text[:40]!r})")
    value = int(text)
    if minimum is not None and value < minimum:
        raise _invalid(name, f"{name} 不能小于 {minimum}")
    return value


def _req_int(params: Mapping[str, str], name: str, minimum: int | None = None) -> int:
    return _to_int(_req_str(params, name), name, minimum)


def _opt_int(params: Mapping[str, str], name: str, minimum: int | None = None) -> int | None:
    text = _opt_str(params, name)
    return None if text is None else _to_int(text, name, minimum)


def _update_type(params: Mapping[str, str]) -> UpdateType:
    value = _opt_int(params, "type")
    if value is None:
        return 1
    if value not in (1, 2):
        raise _invalid("type", "type 只能是 1 (全量) 或 2 (增量)")
    return cast(UpdateType, value)


def _fields(params: Mapping[str, str]) -> frozenset[str]:
    return frozenset(f.strip() for f in _req_str(params, "fields").split(",") if f.strip())


def _time_param(params: Mapping[str, str], name: str) -> datetime | None:
    text = _opt_str(params, name)
    if text is None:
        return None
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=CHINA_TZ)
    except ValueError:
        raise _invalid(name, f'{name} 格式应为 "yyyy-MM-dd HH:mm:ss"') from None


def _pairs(text: str, name: str, numeric_key: bool) -> list[tuple[int | str, int]]:
    pairs: list[tuple[int | str, int]] = []
    for chunk in filter(None, (c.strip() for c in text.split(";"))):
        key, sep, qty = chunk.rpartition(":")
        if not sep or not key:
            raise _invalid(name, f"{name} 格式应为 id:数量;id:数量 (bad entry {chunk[:40]!r})")
        parsed: int | str = _to_int(key, name, 1) if numeric_key else key
        pairs.append((parsed, _to_int(qty, name)))
    if len(pairs) > 20:
        raise _invalid(name, f"{name} 最多 20 个 SKU (got {len(pairs)})")
    return pairs


def _paging(params: Mapping[str, str], max_page_no: int | None) -> tuple[int, int]:
    page_no = _opt_int(params, "page_no", 1) or 1
    page_size = _opt_int(params, "page_size", 1) or 40
    if page_size > 200:
        raise _invalid("page_size", "page_size 最大为 200")
    if max_page_no is not None and page_no > max_page_no:
        raise _invalid("page_no", f"page_no 最大为 {max_page_no}")
    if page_no * page_size > 100_000:
        raise _invalid("page_no", "page_no*page_size 不能超过 10万")
    return page_no, page_size


def _order(params: Mapping[str, str], allowed: frozenset[str]) -> tuple[str, bool]:
    text = _opt_str(params, "order_by") or "list_time:desc"
    name, _, direction = text.partition(":")
    if name not in allowed or direction not in ("", "asc", "desc"):
        raise _invalid("order_by", f"order_by 应为 {'|'.join(sorted(allowed))}:asc|desc")
    return name, direction != "asc"


# ====================================================================== rendering


def _wrap(values: list[Any], singular: str, simplify: bool) -> Any:
    return values if simplify else {singular: values}


def _pick(view: Body, fields: frozenset[str] | None) -> Body:
    return {k: v for k, v in view.items() if v is not None and (fields is None or k in fields)}


def _render_item(item: Item, fields: frozenset[str] | None, simplify: bool) -> Body:
    view = item_to_json(item)
    skus = view.pop("skus")
    out = _pick(view, fields)
    if fields is None or "sku" in fields or "skus" in fields:
        out["skus"] = _wrap(skus, "sku", simplify)
    return out


def _stock_result(item: Item, simplify: bool) -> Body:
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
        out["skus"] = _wrap(skus, "sku", simplify)
    return {"item": out}


def _shelf_result(item: Item) -> Body:
    return {
        "item": {
            "iid": str(item.num_iid),
            "num_iid": item.num_iid,
            "modified": format_timestamp(item.modified),
        }
    }


# ====================================================================== APIs


@dataclass(frozen=True)
class CallContext:
    state: SandboxState
    now: datetime
    simplify: bool


@dataclass(frozen=True)
class Api:
    """One TOP API: ``parse`` validates parameters (40/41) and returns the runner."""

    parse: Callable[[Mapping[str, str]], Runner]
    writes: bool = False
    needs_session: bool = True


def _item_quantity_update(params: Mapping[str, str]) -> Runner:
    num_iid = _req_int(params, "num_iid", 1)
    quantity = _req_int(params, "quantity")
    sku_id = _opt_int(params, "sku_id", 1)
    outer_id = _opt_str(params, "outer_id")
    update_type = _update_type(params)

    def run(ctx: CallContext) -> Body:
        item = ctx.state.catalog.update_item_quantity(
            num_iid,
            quantity,
            now=ctx.now,
            sku_id=sku_id,
            outer_id=None if sku_id is not None else outer_id,
            update_type=update_type,
            zero_onsale=ctx.state.config.zero_onsale,
        )
        return _stock_result(item, ctx.simplify)

    return run


def _skus_quantity_update(params: Mapping[str, str]) -> Runner:
    num_iid = _req_int(params, "num_iid", 1)
    by_id = _opt_str(params, "skuid_quantities")
    by_outer = _opt_str(params, "outerid_quantities")
    if by_id is None and by_outer is None:
        raise _missing("skuid_quantities")
    if by_id is not None:
        entries = _pairs(by_id, "skuid_quantities", numeric_key=True)
    else:
        entries = _pairs(cast(str, by_outer), "outerid_quantities", numeric_key=False)
    if not entries:
        raise _missing("skuid_quantities")
    update_type = _update_type(params)

    def run(ctx: CallContext) -> Body:
        item = ctx.state.catalog.update_skus_quantity(
            num_iid,
            entries,
            now=ctx.now,
            by_outer_id=by_id is None,
            update_type=update_type,
            zero_onsale=ctx.state.config.zero_onsale,
        )
        return _stock_result(item, ctx.simplify)

    return run


def _listing(params: Mapping[str, str]) -> Runner:
    num_iid = _req_int(params, "num_iid", 1)
    num = _req_int(params, "num", 0)
    return lambda ctx: _shelf_result(ctx.state.catalog.list_item(num_iid, num, now=ctx.now))


def _delisting(params: Mapping[str, str]) -> Runner:
    num_iid = _req_int(params, "num_iid", 1)
    return lambda ctx: _shelf_result(ctx.state.catalog.delist_item(num_iid, now=ctx.now))


def _seller_get(params: Mapping[str, str]) -> Runner:
    fields = _fields(params)
    num_iid = _req_int(params, "num_iid", 1)

    def run(ctx: CallContext) -> Body:
        return {"item": _render_item(ctx.state.catalog.get_item(num_iid), fields, ctx.simplify)}

    return run


def _listing_query(status: ApproveStatus) -> Callable[[Mapping[str, str]], Runner]:
    instock = status == "instock"

    def parse(params: Mapping[str, str]) -> Runner:
        fields = _fields(params)
        start = _time_param(params, "start_modified")
        end = _time_param(params, "end_modified")
        page_no, page_size = _paging(params, 101 if instock else None)
        order_by, descending = _order(
            params, ORDER_FIELDS - {"sold_quantity"} if instock else ORDER_FIELDS
        )
        banner_text = _opt_str(params, "banner") if instock else None
        if banner_text is not None and banner_text not in BANNERS:
            raise _invalid("banner", f"banner 应为 {'|'.join(BANNERS)}")

        def run(ctx: CallContext) -> Body:
            total, page = ctx.state.catalog.list_items(
                status,
                start_modified=start,
                end_modified=end,
                banner=banner_text,
                order_by=order_by,
                descending=descending,
                page_no=page_no,
                page_size=page_size,
            )
            items = [_render_item(i, fields, ctx.simplify) for i in page]
            return {"total_results": total, "items": _wrap(items, "item", ctx.simplify)}

        return run

    return parse


def _skus_custom_get(params: Mapping[str, str]) -> Runner:
    fields = _fields(params)
    outer_id = _req_str(params, "outer_id")

    def run(ctx: CallContext) -> Body:
        found = ctx.state.catalog.skus_by_outer_id(outer_id)
        skus = [_pick(sku_to_json(i, s), fields) for i, s in found]
        return {"skus": _wrap(skus, "sku", ctx.simplify)}

    return run


def _items_custom_get(params: Mapping[str, str]) -> Runner:
    fields = _fields(params)
    outer_ids = [o.strip() for o in _req_str(params, "outer_id").split(",") if o.strip()]
    if not outer_ids:
        raise _missing("outer_id")
    if len(outer_ids) > 40:
        raise _invalid("outer_id", f"outer_id 最多 40 个 (got {len(outer_ids)})")

    def run(ctx: CallContext) -> Body:
        found = ctx.state.catalog.items_by_outer_ids(outer_ids)
        items = [_render_item(i, fields, ctx.simplify) for i in found]
        return {"items": _wrap(items, "item", ctx.simplify)}

    return run


def _inventory_query(params: Mapping[str, str]) -> Runner:
    parts = [p.strip() for p in _req_str(params, "sc_item_ids").split("^") if p.strip()]
    if len(parts) > 50:
        raise _invalid("sc_item_ids", f"sc_item_ids 最多 50 个 (got {len(parts)})")
    ids = [_to_int(p, "sc_item_ids", 1) for p in parts]

    def run(ctx: CallContext) -> Body:
        records, unknown = ctx.state.catalog.inventory(ids)
        sums = [
            {
                "sc_item_id": r.sc_item_id,
                "sc_item_code": r.sc_item_code,
                "store_code": r.store_code,
                "inventory_type": r.inventory_type,
                "inventory_type_name": r.inventory_type_name,
                "quantity": r.quantity,
                "occupy_quantity": r.occupy_quantity,
                "reserve_quantity": r.reserve_quantity,
            }
            for r in records
        ]
        tips = [{"sc_item_id": i, "info": "后端商品不存在"} for i in unknown]
        return {
            "item_inventorys": _wrap(sums, "inventory_sum", ctx.simplify),
            "tip_infos": _wrap(tips, "tip_info", ctx.simplify),
        }

    return run


def _token_refresh(params: Mapping[str, str]) -> Runner:
    refresh_token = _req_str(params, "refresh_token")

    def run(ctx: CallContext) -> Body:
        issued = ctx.state.tokens.rotate(refresh_token, ctx.now.timestamp())
        if issued is None:
            raise TopFault(
                15,
                "Remote service error",
                "isv.invalid-parameter:refresh_token",
                "refresh_token 无效或已过期 (invalid or expired)",
            )
        return {"token_result": json.dumps(issued, separators=(",", ":"))}

    return run


APIS: Final[Mapping[str, Api]] = {
    "taobao.item.quantity.update": Api(_item_quantity_update, writes=True),
    "taobao.skus.quantity.update": Api(_skus_quantity_update, writes=True),
    "taobao.item.update.listing": Api(_listing, writes=True),
    "taobao.item.update.delisting": Api(_delisting, writes=True),
    "taobao.item.seller.get": Api(_seller_get),
    "taobao.items.onsale.get": Api(_listing_query("onsale")),
    "taobao.items.inventory.get": Api(_listing_query("instock")),
    "taobao.skus.custom.get": Api(_skus_custom_get),
    "taobao.items.custom.get": Api(_items_custom_get),
    "taobao.inventory.query": Api(_inventory_query),
    # Writes token state, but no stock: ``applied`` in the call log tracks stock changes.
    "taobao.top.auth.token.refresh": Api(_token_refresh, needs_session=False),
}


# ====================================================================== gateway checks


def _platform(code: int, sub_code: str | None = None, sub_msg: str | None = None) -> TopFault:
    return TopFault(code, PLATFORM_ERRORS[code], sub_code, sub_msg)


def _check_timestamp(params: Mapping[str, str], state: SandboxState) -> None:
    text = params.get("timestamp", "").strip()
    if not text:
        raise _platform(30)
    try:
        sent = state.parse_timestamp(text)
    except (ValueError, OverflowError, OSError):
        raise _platform(31, None, 'timestamp 应为 "yyyy-MM-dd HH:mm:ss" (GMT+8) 或毫秒') from None
    skew = abs((sent - state.now()).total_seconds())
    if skew > state.config.max_skew_s:
        allowed = f"{state.config.max_skew_s:g}"
        raise _platform(31, None, f"时间戳误差超过 {allowed} 秒 (allowed skew is {allowed} s)")


def _check_version_and_format(params: Mapping[str, str]) -> None:
    version = params.get("v", "").strip()
    if not version:
        raise _platform(32)
    if not _VERSION_RE.fullmatch(version):
        raise _platform(33)
    if version != API_VERSION:
        raise _platform(34, None, f"only v={API_VERSION} is supported")
    fmt = params.get("format", "json").strip().lower() or "json"
    if fmt != "json":
        raise _platform(23, None, "the sandbox speaks JSON only; send format=json")


def _check_signature(params: Mapping[str, str], state: SandboxState) -> None:
    method = params.get("sign_method", "md5") or "md5"
    if method not in SIGN_METHODS:
        raise _invalid("sign_method", f"sign_method 应为 {', '.join(SIGN_METHODS)}")
    if not params.get("sign"):
        raise _platform(24)
    if not verify(params, state.config.app_secret):
        raise _platform(25)


def _check_session(params: Mapping[str, str], state: SandboxState) -> None:
    session = params.get("session", "").strip()
    if not session:
        raise _platform(26)
    if not state.tokens.session_valid(session, state.wall()):
        raise _platform(27, "invalid-sessionkey", "session 无效或已过期 (invalid or expired)")


def check_call(http_method: str, params: Mapping[str, str], state: SandboxState) -> Runner:
    """All gateway checks in TOP's order; returns the API's runner or raises :class:`TopFault`."""
    if http_method not in ("GET", "POST"):
        raise _platform(9, None, "请用大写的POST或GET")
    method = params.get("method", "").strip()
    if not method:
        raise _platform(21)
    app_key = params.get("app_key", "").strip()
    if not app_key:
        raise _platform(28)
    if app_key != state.config.app_key:
        raise _platform(29)
    banned = state.limiter.check(app_key, state.monotonic())
    if banned is not None:
        raise _platform(7, BAN_SUB_CODE, ban_message(banned))
    _check_timestamp(params, state)
    _check_version_and_format(params)
    _check_signature(params, state)
    api = APIS.get(method)
    if api is None:
        raise _platform(22, None, f"不存在的方法名 {method[:80]}")
    if api.needs_session:
        _check_session(params, state)
    return api.parse(params)


# ====================================================================== HTTP shell


def _json(body: Body, status: int = 200) -> web.Response:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return web.Response(body=data, status=status, headers=_JSON_HEADERS)


def _error_body(fault: TopFault, request_id: str) -> Body:
    err: Body = {"code": fault.code, "msg": fault.msg}
    if fault.sub_code:
        err["sub_code"] = fault.sub_code
    if fault.sub_msg:
        err["sub_msg"] = fault.sub_msg
    err["request_id"] = request_id
    return {"error_response": err}


def _success_body(method: str, result: Body, request_id: str, simplify: bool) -> Body:
    result["request_id"] = request_id
    return result if simplify else {response_key(method): result}


async def _read_params(request: web.Request) -> dict[str, str]:
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
        raise _platform(43, None, "request body too large") from None
    except Exception as exc:
        # aiohttp's multipart reader raises several types on malformed input: all the
        # client's fault, so all answered as TOP's "Parameter Error".
        raise _platform(43, None, f"cannot parse the request body: {exc}"[:200]) from None
    return params


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


@dataclass
class _Outcome:
    body: Body
    applied: bool = False
    fault: str | None = None
    drop: bool = False


async def _serve_call(request: web.Request, params: dict[str, str], request_id: str) -> _Outcome:
    state = request.app[STATE_KEY]
    outcome = _Outcome({})
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
        outcome.body = _success_body(method, result, request_id, simplify)
        if decision.kind == "hang_after_apply":
            await asyncio.sleep(decision.hold_s)
        outcome.drop = decision.kind == "drop_after_apply"
    except TopFault as fault:
        outcome.body = _error_body(fault, request_id)
    return outcome


async def router(request: web.Request) -> web.StreamResponse:
    """``/router/rest``: never raises; anything unexpected becomes 15 ``isp.unknown-error``."""
    started = time.perf_counter()
    state = request.app[STATE_KEY]
    request_id = new_request_id(state.ids)
    params: dict[str, str] = {}
    try:
        params = await _read_params(request)
        outcome = await _serve_call(request, params, request_id)
    except TopFault as fault:
        outcome = _Outcome(_error_body(fault, request_id))
    except Exception:
        logger.exception("sandbox gateway: unexpected error (request_id %s)", request_id)
        unknown = TopFault(15, "Remote service error", "isp.unknown-error", "sandbox error")
        outcome = _Outcome(_error_body(unknown, request_id))
    _log_call(state, params, outcome, request_id, started)
    if outcome.drop and request.transport is not None:
        # The change is applied; the client gets no answer at all: an "unknown outcome".
        request.transport.close()
    return _json(outcome.body)


def _log_call(
    state: SandboxState, params: Mapping[str, str], outcome: _Outcome, rid: str, started: float
) -> None:
    error = outcome.body.get("error_response")
    state.calls.record(
        {
            "time": state.wall(),  # rendered when read: keeps the hot path lean
            "method": params.get("method") or None,
            "app_key": params.get("app_key") or None,
            "params": redact(params),
            "code": None if error is None else error["code"],
            "sub_code": None if error is None else error.get("sub_code"),
            "request_id": rid,
            "applied": outcome.applied,
            "fault": outcome.fault,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }
    )


def _oauth_error(status: int, error: str, description: str) -> tuple[int, Body]:
    return status, {"error": error, "error_description": description}


def _token_answer(state: SandboxState, form: Mapping[str, str]) -> tuple[int, Body]:
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
    issued = state.tokens.rotate(refresh, state.wall())
    if issued is None:
        return _oauth_error(400, "invalid_grant", "refresh_token is invalid or expired")
    return 200, issued


async def token(request: web.Request) -> web.Response:
    """``/token``: the OAuth refresh grant."""
    started = time.perf_counter()
    state = request.app[STATE_KEY]
    try:
        form = await _read_params(request)
    except TopFault:
        form = {}
    if request.method != "POST":
        status, body = _oauth_error(400, "invalid_request", "use POST")
    else:
        status, body = _token_answer(state, form)
    error = None if status == 200 else {"code": status, "sub_code": body["error"]}
    entry = _Outcome({} if error is None else {"error_response": error})
    _log_call(state, {**form, "method": TOKEN_PATH}, entry, new_request_id(state.ids), started)
    return _json(body, status)


# ---------------------------------------------------------------------- admin


async def _json_body(request: web.Request) -> Any:
    text = await request.text()
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"body is not JSON: {exc}"}), content_type="application/json"
        ) from None


def _bad_request(message: str, status: int = 400) -> web.Response:
    return _json({"error": message}, status)


async def admin_state(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return _json(
        {
            "items": [item_to_json(i) for i in state.catalog.items.values()],
            "sc_items": [vars(r) for r in state.catalog.sc_items],
            "bans": state.limiter.bans(state.monotonic()),
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
    return _json({"calls": calls, "next": next_seq})


async def admin_reset(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await _json_body(request)
    if not isinstance(body, dict):
        return _bad_request('expected a JSON object like {"catalog": {...}}')
    try:
        catalog = load_catalog(body["catalog"]) if "catalog" in body else None
        faults = FaultConfig.from_json(body["faults"]) if "faults" in body else None
    except ValueError as exc:  # CatalogError is a ValueError
        return _bad_request(str(exc))
    state.reset(catalog, faults)
    return _json({"status": "reset", "items": len(state.catalog.items)})


async def admin_faults(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    if request.method == "POST":
        try:
            state.faults = FaultConfig.from_json(await _json_body(request))
        except ValueError as exc:
            return _bad_request(str(exc))
    return _json(state.faults.to_json())


async def admin_item(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await _json_body(request)
    try:
        num_iid = int(request.match_info["num_iid"])
        edit = _merchant_edit_args(body)
        item = state.catalog.merchant_edit(num_iid, now=state.now(), **edit)
    except TopFault as fault:
        return _bad_request(fault.sub_msg or fault.msg, 404)
    except ValueError as exc:
        return _bad_request(str(exc))
    return _json(item_to_json(item))


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
    return _json({"expired": state.tokens.expire_all()})


async def healthz(_request: web.Request) -> web.Response:
    return _json({"status": "ok"})


def _routes() -> Iterator[tuple[str, str, Callable[[web.Request], Any]]]:
    yield "*", "/router/rest", router
    yield "*", TOKEN_PATH, token
    yield "GET", "/sandbox/state", admin_state
    yield "GET", "/sandbox/calls", admin_calls
    yield "POST", "/sandbox/reset", admin_reset
    yield "GET", "/sandbox/faults", admin_faults
    yield "POST", "/sandbox/faults", admin_faults
    yield "POST", "/sandbox/items/{num_iid}", admin_item
    yield "POST", "/sandbox/tokens/expire", admin_expire_tokens
    yield "GET", "/healthz", healthz


def build_app(config: SandboxConfig, state: SandboxState | None = None) -> web.Application:
    """The gateway app; its whole state is one :class:`SandboxState` under :data:`STATE_KEY`."""
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app[STATE_KEY] = state or SandboxState(config)
    for method, path, handler in _routes():
        app.router.add_route(method, path, handler)
    return app
