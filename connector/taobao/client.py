"""The async TOP client: policy (signing, budget, retries, token refresh) over httpx.

The client holds policy; the httpx transport only sends. Unit tests inject
``httpx.MockTransport``; integration tests point ``gateway_url`` at the sandbox gateway.

Every parameter, the session included, travels in the POST form body rather than the URL
query: TOP accepts both, and a body keeps the session out of access logs and out of the
request line that httpx logs and puts in its exception messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import httpx
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from pydantic import SecretStr

from connector.errors import (
    TaobaoAuthError,
    TaobaoCallerError,
    TaobaoCallLimited,
    TaobaoError,
    TaobaoSessionError,
    TaobaoTransientError,
    TaobaoUnknownOutcome,
)
from connector.keys import Keys
from connector.redis_client import AsyncRedis
from connector.settings import TaobaoSettings
from connector.taobao.budget import BudgetPolicy, CallBudget, QuotaView, RedisCallBudget
from connector.taobao.classify import api_scoped_ban, error_from_response
from connector.taobao.models import (
    InventoryQueryResult,
    InventoryRecord,
    Item,
    ItemQuantity,
    ShelfChange,
    Sku,
    parse_inventory_query,
    parse_item,
    parse_item_quantity,
    parse_shelf_change,
    parse_sku,
)
from connector.taobao.protocol import API_VERSION, format_timestamp, response_key, unwrap_list
from connector.taobao.retry import Ban, Raise, Refresh, Retry, RetryPolicy, next_step
from connector.taobao.signing import SignMethod, drop_empty, sign
from connector.taobao.tokens import (
    Expiry,
    OAuthTokenEndpoint,
    RedisTokenStore,
    StoredToken,
    TokenManager,
    TopTokenEndpoint,
)
from connector.telemetry import TaobaoMetrics, get_tracer

__all__ = [
    "ITEM_FIELDS",
    "SKU_FIELDS",
    "CallRecord",
    "TopClient",
    "build_http_client",
    "record_calls",
]

log = logging.getLogger(__name__)

ParamValue = str | int | bool | datetime | None

ITEM_FIELDS: Final = (
    "num_iid,title,outer_id,num,approve_status,modified,list_time,delist_time,"
    "with_hold_quantity,sub_stock,sku"
)
LIST_FIELDS: Final = "num_iid,title,outer_id,num,approve_status,modified,list_time,delist_time"
SKU_FIELDS: Final = "sku_id,num_iid,outer_id,quantity,properties,modified,status"

# Batch limits of the platform (reference §3.11).
SKUS_PER_UPDATE: Final = 20
OUTER_IDS_PER_ITEMS_CUSTOM_GET: Final = 40
SC_ITEMS_PER_INVENTORY_QUERY: Final = 50
MAX_PAGE_SIZE: Final = 200
INVENTORY_GET_MAX_PAGE: Final = 101
AUTH_FAILURE_HOLD_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One TOP call as a result event reports it: no parameters beyond the ids."""

    method: str
    num_iid: int | None
    sku_ids: tuple[int, ...]
    request_id: str | None
    outcome: str  # "ok" or the error class name
    attempts: int = 1  # HTTP requests sent, retries included (0: refused before sending)


_JOURNAL: ContextVar[list[CallRecord] | None] = ContextVar("taobao_call_journal", default=None)


@contextlib.contextmanager
def record_calls() -> Iterator[list[CallRecord]]:
    """Collect the calls made in this context (an asyncio task and what it awaits)."""
    journal: list[CallRecord] = []
    token = _JOURNAL.set(journal)
    try:
        yield journal
    finally:
        _JOURNAL.reset(token)


def _sku_ids(params: Mapping[str, str]) -> tuple[int, ...]:
    if "sku_id" in params:
        return (int(params["sku_id"]),)
    pairs = params.get("skuid_quantities", "")
    return tuple(int(pair.split(":")[0]) for pair in pairs.split(";") if pair)


def _journal(
    method: str, params: Mapping[str, str], request_id: str | None, outcome: str, attempts: int
) -> None:
    journal = _JOURNAL.get()
    if journal is not None:
        num_iid = params.get("num_iid")
        sku_ids = _sku_ids(params)
        iid = int(num_iid) if num_iid else None
        journal.append(CallRecord(method, iid, sku_ids, request_id, outcome, attempts))


def build_http_client(
    settings: TaobaoSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """One shared keep-alive client with bounded connections and timeouts on."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
        ),
        headers={"Accept-Encoding": "gzip", "User-Agent": "taobao-connector"},
        transport=transport,
    )


def _param(value: ParamValue) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return format_timestamp(value)
    return str(value)


def _chunks(values: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


class TopClient:
    """Calls the Taobao Open Platform for one app and one seller session."""

    def __init__(
        self,
        *,
        http: httpx.AsyncClient,
        gateway_url: str,
        app_key: str,
        app_secret: SecretStr,
        tokens: TokenManager | None,
        budget: CallBudget,
        retry: RetryPolicy | None = None,
        sign_method: SignMethod = "hmac-sha256",
        simplify: bool = False,
        default_ban_s: float = 60.0,
        tracer: Tracer | None = None,
        metrics: TaobaoMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._http = http
        self._url = gateway_url
        self._app_key = app_key
        self._secret = app_secret
        self._tokens = tokens
        self._budget = budget
        self._retry = retry or RetryPolicy()
        self._sign_method = sign_method
        self._simplify = simplify
        self._default_ban_s = default_ban_s
        self._tracer = tracer or get_tracer()
        self._metrics = metrics or TaobaoMetrics.create()
        self._clock = clock
        self._now = now
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not cryptography)
        # The last call refused for the session or the credentials (message, when); cleared
        # by a successful call. Readiness reports the connector unusable meanwhile.
        self._auth_failure: tuple[str, float] | None = None

    def __repr__(self) -> str:
        return f"TopClient(gateway_url={self._url!r}, app_key={self._app_key!r})"

    @property
    def last_auth_failure(self) -> str | None:
        """Why a recent call failed on the session or the credentials, if one did."""
        if self._auth_failure is None:
            return None
        message, at = self._auth_failure
        # Held for a while, then forgotten: with no calls to prove otherwise, another
        # replica may have refreshed the token meanwhile; the next call will tell.
        return message if self._clock() - at < AUTH_FAILURE_HOLD_S else None

    async def ban_remaining_s(self) -> float:
        """Seconds left of the platform ban shared by every replica (0: none)."""
        return await self._budget.ban_remaining_s()

    def quota(self) -> QuotaView:
        """The app's calls today against ``TAOBAO_DAILY_QUOTA``, as last seen (no I/O)."""
        return self._budget.quota

    def session_usable(self) -> bool:
        """A token is at hand and no recent call was refused for the session or the
        credentials. No I/O, so a probe can ask as often as it likes."""
        if self.last_auth_failure is not None:
            return False
        return self._tokens is None or self._tokens.usable()

    async def prepare(self) -> None:
        """Load (or refresh) the seller's session once, so a bad one fails at start-up."""
        if self._tokens is not None:
            await self._tokens.current()

    @classmethod
    def from_settings(
        cls,
        settings: TaobaoSettings,
        *,
        redis: AsyncRedis,
        keys: Keys,
        http: httpx.AsyncClient,
        tracer: Tracer | None = None,
        metrics: TaobaoMetrics | None = None,
    ) -> TopClient:
        """A client whose call budget and tokens are shared through Redis."""
        policy = BudgetPolicy(
            settings.qps, settings.burst, settings.method_qps, settings.daily_quota
        )
        endpoint = OAuthTokenEndpoint(
            http,
            token_url=settings.token_url,
            app_key=settings.app_key,
            app_secret=settings.app_secret,
        )
        tokens = TokenManager(
            store=RedisTokenStore(redis, keys, settings.app_key),
            endpoint=endpoint,
            seed_session=settings.session,
            seed_refresh_token=settings.refresh_token,
            seed_expires_at=settings.session_expires_at,
            refresh_margin_s=settings.refresh_margin_s,
            # Held while the refresh call runs, which may wait for the budget and retry:
            # no other replica may spend the same refresh token meanwhile.
            lock_ttl_s=settings.deadline_s + settings.timeout_s + 5,
        )
        client = cls(
            http=http,
            gateway_url=settings.gateway_url,
            app_key=settings.app_key,
            app_secret=settings.app_secret,
            tokens=tokens,
            budget=RedisCallBudget(
                redis, keys, settings.app_key, policy, reach_s=settings.deadline_s
            ),
            retry=RetryPolicy(
                max_attempts=settings.max_attempts,
                base_s=settings.backoff_base_s,
                max_s=settings.backoff_max_s,
                deadline_s=settings.deadline_s,
            ),
            sign_method=settings.sign_method,
            simplify=settings.simplify,
            default_ban_s=settings.default_ban_s,
            tracer=tracer,
            metrics=metrics,
        )
        if settings.token_refresh == "top":  # noqa: S105 (a mode, not a secret)
            # The documented API is a TOP call like any other: through this client.
            tokens.use_endpoint(TopTokenEndpoint(client.call))
        return client

    def session_expiry(self) -> Expiry | None:
        """The seller session's known expiries (no I/O; ``None`` before it is loaded)."""
        return self._tokens.expiry() if self._tokens is not None else None

    # ------------------------------------------------------------------ stock

    async def update_quantity(
        self,
        num_iid: int,
        quantity: int,
        *,
        sku_id: int | None = None,
        outer_id: str | None = None,
        incremental: bool = False,
    ) -> ItemQuantity:
        """``taobao.item.quantity.update``: set (or with ``incremental`` add) the stock."""
        params = {
            "num_iid": num_iid,
            "sku_id": sku_id,
            "outer_id": outer_id,
            "quantity": quantity,
            "type": 2 if incremental else 1,
        }
        method = "taobao.item.quantity.update"
        body = await self.call(method, params, idempotent=not incremental)
        return _parsed(method, body, lambda b: parse_item_quantity(b["item"]))

    async def update_sku_quantities(
        self, num_iid: int, quantities: Mapping[int, int], *, incremental: bool = False
    ) -> ItemQuantity:
        """``taobao.skus.quantity.update``, 20 SKUs per call; returns the item after the last."""
        if not quantities:
            raise ValueError("no SKU quantities to update")
        result: ItemQuantity | None = None
        # In the caller's order: it may matter which SKUs change first (see projection).
        for chunk in _chunks(list(quantities.items()), SKUS_PER_UPDATE):
            params: dict[str, ParamValue] = {
                "num_iid": num_iid,
                "skuid_quantities": ";".join(f"{sku}:{qty}" for sku, qty in chunk),
                "type": 2 if incremental else 1,
            }
            method = "taobao.skus.quantity.update"
            body = await self.call(method, params, idempotent=not incremental)
            result = _parsed(method, body, lambda b: parse_item_quantity(b["item"]))
        assert result is not None
        return result

    async def list_item(self, num_iid: int, num: int) -> ShelfChange:
        """``taobao.item.update.listing``: put the item on sale with ``num`` in stock."""
        method = "taobao.item.update.listing"
        body = await self.call(method, {"num_iid": num_iid, "num": num}, idempotent=True)
        return _parsed(method, body, lambda b: parse_shelf_change(b["item"]))

    async def delist_item(self, num_iid: int) -> ShelfChange:
        """``taobao.item.update.delisting``: take the item off sale."""
        method = "taobao.item.update.delisting"
        body = await self.call(method, {"num_iid": num_iid}, idempotent=True)
        return _parsed(method, body, lambda b: parse_shelf_change(b["item"]))

    # ------------------------------------------------------------------ reads

    async def get_item(self, num_iid: int, *, fields: str = ITEM_FIELDS) -> Item:
        """``taobao.item.seller.get``."""
        method = "taobao.item.seller.get"
        body = await self.call(method, {"num_iid": num_iid, "fields": fields}, idempotent=True)
        return _parsed(method, body, lambda b: parse_item(b["item"]))

    def iter_onsale(
        self,
        *,
        start_modified: datetime | None = None,
        end_modified: datetime | None = None,
        page_size: int = MAX_PAGE_SIZE,
        fields: str = LIST_FIELDS,
    ) -> AsyncIterator[Item]:
        """``taobao.items.onsale.get``, every page, optionally within a modified window."""
        params = {"fields": fields, "start_modified": start_modified, "end_modified": end_modified}
        return self._pages("taobao.items.onsale.get", params, page_size, max_page=None)

    def iter_inventory(
        self,
        *,
        banner: str | None = None,
        start_modified: datetime | None = None,
        end_modified: datetime | None = None,
        page_size: int = MAX_PAGE_SIZE,
        fields: str = LIST_FIELDS,
    ) -> AsyncIterator[Item]:
        """``taobao.items.inventory.get`` (items not on sale), every page up to the 101st."""
        params = {
            "fields": fields,
            "banner": banner,
            "start_modified": start_modified,
            "end_modified": end_modified,
        }
        return self._pages(
            "taobao.items.inventory.get", params, page_size, max_page=INVENTORY_GET_MAX_PAGE
        )

    async def _pages(
        self,
        method: str,
        params: Mapping[str, ParamValue],
        page_size: int,
        *,
        max_page: int | None,
    ) -> AsyncIterator[Item]:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
        # The API has no has_next: page until total_results is reached or a page is short.
        page_no, seen = 1, 0
        while True:
            if max_page is not None and page_no > max_page:
                raise TaobaoCallerError(
                    f"more than {max_page} pages: narrow the start/end_modified window",
                    method=method,
                )
            body = await self.call(
                method, {**params, "page_no": page_no, "page_size": page_size}, idempotent=True
            )
            items = _parsed(
                method, body, lambda b: [parse_item(r) for r in unwrap_list(b.get("items"), "item")]
            )
            for item in items:
                yield item
            seen += len(items)
            total = int(body.get("total_results") or 0)
            if len(items) < page_size or seen >= total:
                return
            page_no += 1

    async def skus_by_outer_id(self, outer_id: str, *, fields: str = SKU_FIELDS) -> list[Sku]:
        """``taobao.skus.custom.get``: every SKU carrying this merchant code."""
        method = "taobao.skus.custom.get"
        body = await self.call(method, {"outer_id": outer_id, "fields": fields}, idempotent=True)
        return _parsed(
            method, body, lambda b: [parse_sku(r) for r in unwrap_list(b.get("skus"), "sku")]
        )

    async def items_by_outer_ids(
        self, outer_ids: Sequence[str], *, fields: str = ITEM_FIELDS
    ) -> list[Item]:
        """``taobao.items.custom.get``: items by merchant code, 40 codes per call."""
        items: list[Item] = []
        for chunk in _chunks(list(outer_ids), OUTER_IDS_PER_ITEMS_CUSTOM_GET):
            body = await self.call(
                "taobao.items.custom.get",
                {"outer_id": ",".join(chunk), "fields": fields},
                idempotent=True,
            )
            items.extend(
                _parsed(
                    "taobao.items.custom.get",
                    body,
                    lambda b: [parse_item(r) for r in unwrap_list(b.get("items"), "item")],
                )
            )
        return items

    async def query_inventory(self, sc_item_ids: Sequence[int]) -> InventoryQueryResult:
        """``taobao.inventory.query``: warehouse stock of back-end items, 50 ids per call."""
        records: list[InventoryRecord] = []
        missing: list[str] = []
        for chunk in _chunks(list(sc_item_ids), SC_ITEMS_PER_INVENTORY_QUERY):
            body = await self.call(
                "taobao.inventory.query",
                {"sc_item_ids": "^".join(str(i) for i in chunk)},
                idempotent=True,
            )
            result = _parsed("taobao.inventory.query", body, parse_inventory_query)
            records.extend(result.records)
            missing.extend(result.missing)
        return InventoryQueryResult(tuple(records), tuple(missing))

    # ------------------------------------------------------------------ core

    async def call(
        self,
        method: str,
        params: Mapping[str, ParamValue],
        *,
        idempotent: bool,
        needs_session: bool = True,
    ) -> Mapping[str, Any]:
        """Call ``method`` with retries by error class; return the response object.

        ``idempotent`` says whether sending the request twice is the same as once; it
        decides whether an unknown outcome may be retried here.
        """
        api_params = {k: v for k, v in ((k, _param(v)) for k, v in params.items()) if v}
        with self._tracer.start_as_current_span(
            f"taobao {method}", kind=SpanKind.CLIENT, attributes={"taobao.method": method}
        ) as span:
            sent = [0]  # HTTP requests, counted by the policy loop
            try:
                body = await self._call_with_policy(
                    method, api_params, idempotent, needs_session, span, sent
                )
            except TaobaoError as exc:
                if isinstance(exc, TaobaoSessionError | TaobaoAuthError):
                    self._auth_failure = (str(exc), self._clock())
                self._metrics.calls.add(1, {"method": method, "outcome": type(exc).__name__})
                _record_error(span, exc)
                _journal(method, api_params, exc.request_id, type(exc).__name__, sent[0])
                raise
            self._auth_failure = None
            self._metrics.calls.add(1, {"method": method, "outcome": "ok"})
            request_id = str(body.get("request_id", "")) or None
            span.set_attribute("taobao.request_id", request_id or "")
            _journal(method, api_params, request_id, "ok", sent[0])
            return body

    async def _call_with_policy(
        self,
        method: str,
        params: Mapping[str, str],
        idempotent: bool,
        needs_session: bool,
        span: Span,
        sent: list[int],
    ) -> Mapping[str, Any]:
        started = self._clock()
        attempt, refreshed, waited_s = 0, False, 0.0
        while True:
            attempt += 1
            remaining = self._retry.deadline_s - (self._clock() - started)
            wait = await self._budget.acquire(method, max_wait_s=max(0.0, remaining))
            waited_s += wait
            self._metrics.budget_wait_s.record(wait, {"method": method})
            span.set_attribute("taobao.budget_wait_s", waited_s)
            span.set_attribute("taobao.attempts", attempt)
            session = await self._tokens.current() if needs_session and self._tokens else None
            sent[0] += 1
            try:
                return await self._exchange(method, params, session, attempt)
            except TaobaoError as exc:
                remaining = self._retry.deadline_s - (self._clock() - started)
                step = next_step(
                    exc,
                    attempt=attempt,
                    remaining_s=remaining,
                    idempotent=idempotent,
                    refreshed=refreshed,
                    policy=self._retry,
                    rng=self._rng,
                )
                if isinstance(step, Raise):
                    raise
                self._metrics.retries.add(1, {"method": method, "error": type(exc).__name__})
                log.warning(
                    "retrying %s after %s (attempt %d): %s",
                    method,
                    type(exc).__name__,
                    attempt,
                    exc,
                )
                if isinstance(step, Refresh):
                    refreshed = True
                    if session is None or self._tokens is None:
                        raise
                    self._metrics.token_refreshes.add(1)
                    await self._tokens.refresh(stale=session)
                elif isinstance(step, Ban):
                    scoped = api_scoped_ban(exc.sub_code)
                    await self._budget.ban(step.seconds, method=method if scoped else None)
                    if not step.retry:
                        raise
                elif isinstance(step, Retry):
                    await self._sleep(step.delay_s)

    async def _exchange(
        self,
        method: str,
        api_params: Mapping[str, str],
        session: StoredToken | None,
        attempt: int,
    ) -> Mapping[str, Any]:
        form = self._signed_form(method, api_params, session.access_token if session else None)
        started = self._clock()
        try:
            response = await self._http.post(self._url, data=form)
        except httpx.HTTPError as exc:
            raise _transport_error(method, exc, attempt) from None
        finally:
            self._metrics.call_duration_s.record(self._clock() - started, {"method": method})
        return self._parse(method, response, attempt)

    def _signed_form(
        self, method: str, api_params: Mapping[str, str], session: SecretStr | None
    ) -> dict[str, str]:
        form = {
            "method": method,
            "app_key": self._app_key,
            "timestamp": format_timestamp(self._now()),
            "format": "json",
            "v": API_VERSION,
            "sign_method": self._sign_method,
            "simplify": "true" if self._simplify else "",
            "session": session.get_secret_value() if session else "",
            **api_params,
        }
        form = drop_empty(form)
        form["sign"] = sign(form, self._secret.get_secret_value(), self._sign_method)
        return form

    def _parse(self, method: str, response: httpx.Response, attempt: int) -> Mapping[str, Any]:
        status = response.status_code
        if status != 200:
            raise _status_error(method, response, attempt)
        try:
            body = json.loads(response.content)
        except ValueError:
            # A 200 that is not JSON (a proxy's page): we cannot know what happened.
            raise TaobaoUnknownOutcome(
                "gateway answered with something other than JSON", method=method, attempts=attempt
            ) from None
        if not isinstance(body, dict):
            raise TaobaoUnknownOutcome("gateway answered with a non-object", method=method)
        error = body.get("error_response")
        if error is None and "code" in body and "msg" in body:
            error = body  # some gateways send the error object bare
        if isinstance(error, dict):
            raise error_from_response(
                method, error, default_ban_s=self._default_ban_s, attempts=attempt
            )
        if self._simplify:
            return body
        inner = body.get(response_key(method))
        if not isinstance(inner, dict):
            raise TaobaoUnknownOutcome(
                f"response has no {response_key(method)!r} object", method=method, attempts=attempt
            )
        return inner


_R = TypeVar("_R")


def _parsed(method: str, body: Mapping[str, Any], parse: Callable[[Mapping[str, Any]], _R]) -> _R:
    """Parse a success body; a malformed one means we cannot know what happened."""
    try:
        return parse(body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TaobaoUnknownOutcome(
            f"malformed success response ({type(exc).__name__}: {exc})", method=method
        ) from None


def _retry_after_s(value: str | None) -> float:
    """``Retry-After`` in seconds; an HTTP date or garbage falls back to one second."""
    try:
        return max(0.0, float(value or 1))
    except ValueError:
        return 1.0


def _transport_error(method: str, exc: httpx.HTTPError, attempt: int) -> TaobaoError:
    """Translate httpx's errors: was the request possibly received by the gateway?"""
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        # Never reached the gateway: safe to retry whatever the call.
        return TaobaoTransientError(
            f"gateway unreachable ({name})", method=method, attempts=attempt
        )
    if isinstance(exc, httpx.TransportError):
        # Read/write timeouts and dropped connections: the request may have been applied.
        return TaobaoUnknownOutcome(
            f"no response after sending ({name}); the call may have been applied",
            method=method,
            attempts=attempt,
        )
    return TaobaoTransientError(f"HTTP error ({name})", method=method, attempts=attempt)


def _status_error(method: str, response: httpx.Response, attempt: int) -> TaobaoError:
    status = response.status_code
    if status == 429:
        retry_after = _retry_after_s(response.headers.get("Retry-After"))
        return TaobaoCallLimited(
            "HTTP 429", retry_after_s=retry_after, method=method, attempts=attempt
        )
    if status == 503:
        return TaobaoTransientError("HTTP 503", method=method, attempts=attempt)
    if status >= 500:
        # A proxy's 500/502/504 may come after the gateway applied the call.
        return TaobaoUnknownOutcome(f"HTTP {status}", method=method, attempts=attempt)
    if status in (401, 403):
        return TaobaoAuthError(f"HTTP {status}: check TAOBAO_GATEWAY_URL", method=method)
    return TaobaoCallerError(
        f"HTTP {status} from the gateway: check TAOBAO_GATEWAY_URL", method=method, attempts=attempt
    )


def _record_error(span: Span, exc: TaobaoError) -> None:
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    span.set_attribute("taobao.error", type(exc).__name__)
    if exc.code is not None:
        span.set_attribute("taobao.code", exc.code)
    if exc.sub_code:
        span.set_attribute("taobao.sub_code", exc.sub_code)
    if exc.request_id:
        span.set_attribute("taobao.request_id", exc.request_id)
