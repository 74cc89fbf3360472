"""Taobao as a projection of the ledger: push pending SKUs, item by item.

For each Taobao item touched, under a lease that makes one replica at a time push it:

1. read the item's SKUs from the ledger *after* taking the lease, so the quantities pushed
   are the newest (pushes of one item are serialised, and each reads the ledger afresh);
   the lease is renewed in the background, and a push that lost it confirms nothing, so
   an update computed from an older version can never be recorded as the latest;
2. plan the calls (``connector.planner``): full updates of absolute quantities (increases
   before decreases, so an on-sale item never passes through zero), delisting before
   zero, relisting what the connector delisted; any shelf change is re-planned on the item
   as Taobao shows it right now, and an item is relisted only if Taobao's delist time is
   the connector's own, so an item the merchant took down is never relisted;
3. an item that refuses full updates (presale, campaign) gets increments: the intent is
   recorded before the call, and after an unknown outcome nothing is sent again in that
   push; the next attempt reads the item back and increments by what is still missing;
4. confirm a merchant code only when every listing of it succeeded: the ledger drops it
   from the pending set only when Taobao has a version at least as new as its own.

Failures leave codes pending with a time to retry (never delaying a newer change). Only an
app-wide condition (a ban, or every item failing: an outage) is reported as
``retry_after_s``, so the pipeline pauses consumption instead of spinning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final

from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Tracer, set_span_in_context
from redis.exceptions import RedisError

from connector.errors import (
    DependencyError,
    TaobaoCallerError,
    TaobaoCallLimited,
    TaobaoError,
    TaobaoFullUpdateForbidden,
    TaobaoTransientError,
    TaobaoUnknownOutcome,
)
from connector.keys import Keys
from connector.leases import Leases
from connector.ledger import Ledger, SkuStock
from connector.mapping import MappingCache
from connector.planner import Delist, ItemPlan, ItemView, Relist, SetStock, plan_item, target
from connector.records import TaobaoCall, TaobaoState
from connector.redis_client import AsyncRedis
from connector.settings import SyncSettings
from connector.taobao.client import CallRecord, TopClient, record_calls
from connector.telemetry import get_tracer

__all__ = ["ItemTransition", "PushReport", "SkuPush", "TaobaoProjection", "Transition"]

log = logging.getLogger(__name__)

SkuKey = int | None
TRANSIENT_RETRY_S: Final = 10.0
FAILED_RETRY_S: Final = 300.0
LEASE_BUSY_RETRY_S: Final = 1.0
_ZERO_FORBIDDEN: Final = "FORBIDDEN_QUANTITY_ZERO_ERROR"
_ITEM_GONE: Final = ("isv.item-not-exist", "isv.item-is-delete")
# How far Taobao's delist time may trail the time we recorded for our own delisting.
_OWN_DELIST_SLACK_MS: Final = 5_000
_SYNCED: Final = frozenset({TaobaoState.SYNCED, TaobaoState.HAND_DELISTED})
_RANK: Final = {
    TaobaoState.SYNCED: 0,
    TaobaoState.HAND_DELISTED: 1,
    TaobaoState.UNMAPPED: 2,
    TaobaoState.PENDING: 3,
    TaobaoState.FAILED: 4,
}


class Transition(IntEnum):
    DELISTED = 1
    RELISTED = 2
    HAND_DELISTED = 3


@dataclass(frozen=True, slots=True)
class ItemTransition:
    num_iid: int
    kind: Transition
    skus: tuple[str, ...]
    version: int  # the newest ledger version among the item's codes: makes alert ids stable


@dataclass(frozen=True, slots=True)
class SkuPush:
    """What happened on Taobao for one merchant code."""

    sku: str
    state: TaobaoState
    quantity: int | None  # the quantity Taobao was given (when it was)
    version: int | None  # the ledger version that quantity came from
    calls: tuple[TaobaoCall, ...] = ()
    error: str | None = None


@dataclass(slots=True)
class PushReport:
    skus: dict[str, SkuPush] = field(default_factory=dict)
    transitions: list[ItemTransition] = field(default_factory=list)
    retry_after_s: float | None = None  # a ban or an outage: pause consumption, then retry


@dataclass(slots=True)
class _ItemOutcome:
    """One item's push, before codes with several listings are combined."""

    num_iid: int
    read: dict[str, int | None]  # code -> ledger version read (None: never read)
    targets: dict[str, int]  # code -> quantity pushed
    state: TaobaoState
    retry_s: float = 0.0
    error: TaobaoError | None = None
    calls: tuple[TaobaoCall, ...] = ()
    transitions: list[ItemTransition] = field(default_factory=list)


def _calls(records: Sequence[CallRecord]) -> tuple[TaobaoCall, ...]:
    return tuple(
        TaobaoCall(r.method, r.num_iid, r.sku_ids, r.request_id, r.outcome) for r in records
    )


def _failure_policy(exc: TaobaoError) -> tuple[TaobaoState, float]:
    """The state a failed push leaves its codes in, and when to try again."""
    if isinstance(exc, TaobaoCallLimited):
        return TaobaoState.PENDING, max(exc.retry_after_s, 1.0)
    if isinstance(exc, TaobaoTransientError | TaobaoUnknownOutcome):
        return TaobaoState.PENDING, TRANSIENT_RETRY_S
    if (exc.sub_code or "").startswith(_ITEM_GONE):
        return TaobaoState.PENDING, TRANSIENT_RETRY_S  # looked up again next time
    # Session, credentials, a refused request: an operator has to act; retry slowly.
    return TaobaoState.FAILED, FAILED_RETRY_S


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _sku_field(key: SkuKey) -> str:
    return "-" if key is None else str(key)


class ItemStates:
    """What the connector remembers of each Taobao item, in a Redis hash per item.

    Fields: ``on_sale``, ``has_skus``, ``q:<sku_id|->`` (last known quantities),
    ``delisted_by_us`` and ``delisted_at_ms`` (our delisting, written before the call),
    ``tb_delist_ms`` (Taobao's delist time at the last read), ``locked_ms`` (when the item
    last refused a full update), ``checked_ms``.
    """

    def __init__(self, redis: AsyncRedis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def load(self, num_iid: int) -> dict[str, str]:
        try:
            raw = await self._redis.hgetall(self._keys.item(num_iid))
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for item state: {exc}") from exc
        return {_text(k): _text(v) for k, v in raw.items()}

    async def save(self, num_iid: int, fields: Mapping[str, str | int]) -> None:
        mapping: dict[Any, Any] = dict(fields)
        try:
            await self._redis.hset(self._keys.item(num_iid), mapping=mapping)
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for item state: {exc}") from exc

    async def intent(self, num_iid: int) -> dict[str, str]:
        try:
            raw = await self._redis.hgetall(self._keys.intent(num_iid))
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for an intent: {exc}") from exc
        return {_text(k): _text(v) for k, v in raw.items()}

    async def record_intent(self, num_iid: int, intents: Mapping[SkuKey, str]) -> None:
        fields: dict[Any, Any] = {_sku_field(k): v for k, v in intents.items()}
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._keys.intent(num_iid))
                pipe.hset(self._keys.intent(num_iid), mapping=fields)
                await pipe.execute()
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for an intent: {exc}") from exc

    async def clear_intent(self, num_iid: int) -> None:
        try:
            await self._redis.delete(self._keys.intent(num_iid))
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for an intent: {exc}") from exc


def _view(num_iid: int, state: Mapping[str, str], slack_ms: int = _OWN_DELIST_SLACK_MS) -> ItemView:
    quantities: dict[SkuKey, int] = {}
    for name, value in state.items():
        if name.startswith("q:"):
            key = name[2:]
            quantities[None if key == "-" else int(key)] = int(value)
    ours = state.get("delisted_by_us") == "1"
    taobao_ms, our_ms = state.get("tb_delist_ms"), state.get("delisted_at_ms")
    if ours and taobao_ms and our_ms and int(taobao_ms) > int(our_ms) + slack_ms:
        ours = False  # delisted again after us: by the merchant, so it stays down
    return ItemView(
        num_iid=num_iid,
        on_sale=state.get("on_sale") == "1",
        delisted_by_us=ours,
        quantities=quantities,
        has_skus=state.get("has_skus", "1") == "1",
    )


class TaobaoProjection:
    """Pushes the ledger's targets to Taobao (see the module docstring)."""

    def __init__(
        self,
        *,
        client: TopClient,
        ledger: Ledger,
        mapping: MappingCache,
        redis: AsyncRedis,
        keys: Keys,
        settings: SyncSettings,
        tracer: Tracer | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        own_delist_slack_ms: int = _OWN_DELIST_SLACK_MS,
    ) -> None:
        self._client = client
        self._slack_ms = own_delist_slack_ms
        self._ledger = ledger
        self._mapping = mapping
        self._items = ItemStates(redis, keys)
        self._leases = Leases(redis)
        self._keys = keys
        self._settings = settings
        self._tracer = tracer or get_tracer()
        self._clock_ms = clock_ms
        # Called after each item is pushed: a push of many items under the call budget can
        # take minutes, and the pipeline's stall check must see it is moving.
        self.on_item_done: Callable[[], None] = lambda: None

    # ------------------------------------------------------------------ entry points

    async def sweep(self, *, limit: int = 1000) -> PushReport:
        """Push every pending SKU whose time has come (after a crash, an outage, a ban)."""
        due = await self._ledger.due(self._clock_ms(), limit)
        return await self.push(due) if due else PushReport()

    async def known_unmapped(self, codes: Collection[str]) -> set[str]:
        """Codes known (from the mapping cache, without a Taobao call) not to be listed."""
        return await self._mapping.known_unmapped(codes)

    async def push(
        self, codes: Collection[str], *, parents: Mapping[str, Sequence[SpanContext]] | None = None
    ) -> PushReport:
        """Bring Taobao in line with the ledger for ``codes``."""
        report = PushReport()
        if not codes:
            return report
        resolution = await self._mapping.resolve(codes)
        await self._lookup_failures(resolution.failed, report)
        await self._unmapped([c for c, found in resolution.found.items() if not found], report)
        by_item: dict[int, dict[SkuKey, str]] = {}
        for code, listings in resolution.found.items():
            for listing in listings:
                by_item.setdefault(listing.num_iid, {})[listing.sku_id] = code
        outcomes = await self._push_items(by_item, parents or {})
        await self._settle(outcomes, report)
        return report

    # ------------------------------------------------------------------ combining

    async def _push_items(
        self, by_item: dict[int, dict[SkuKey, str]], parents: Mapping[str, Sequence[SpanContext]]
    ) -> list[_ItemOutcome]:
        limit = asyncio.Semaphore(self._settings.push_concurrency)

        async def one(num_iid: int, skus: dict[SkuKey, str]) -> _ItemOutcome:
            async with limit:
                links = [ctx for code in skus.values() for ctx in parents.get(code, ())]
                outcome = await self._guarded(num_iid, skus, links)
                self.on_item_done()
                return outcome

        # A TaskGroup cancels the other pushes if one raises (only Redis being down does),
        # so no orphaned push goes on holding a lease.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(n, s)) for n, s in by_item.items()]
        return [task.result() for task in tasks]

    async def _settle(self, outcomes: list[_ItemOutcome], report: PushReport) -> None:
        """Combine items per code; confirm what fully succeeded, reschedule the rest."""
        by_code: dict[str, list[_ItemOutcome]] = {}
        for outcome in outcomes:
            for code in outcome.read:
                by_code.setdefault(code, []).append(outcome)
            report.transitions.extend(outcome.transitions)
        confirm: dict[str, int] = {}
        retry: dict[float, dict[str, int]] = {}
        for code, items in by_code.items():
            versions = [o.read[code] for o in items]
            worst = max(items, key=lambda o: _RANK[o.state])
            known = [v for v in versions if v is not None]
            if worst.state in _SYNCED and len(known) == len(versions):
                confirm[code] = min(known)
            elif known:
                retry.setdefault(max(o.retry_s for o in items), {})[code] = min(known)
            report.skus[code] = SkuPush(
                code,
                worst.state,
                next((o.targets[code] for o in items if code in o.targets), None),
                min(known) if known else None,
                tuple(c for o in items for c in o.calls),
                str(worst.error) if worst.error else None,
            )
        await self._ledger.confirm(confirm)
        for retry_s, read in retry.items():
            await self._ledger.reschedule(read, self._clock_ms() + int(retry_s * 1000))
        report.retry_after_s = _app_wide_retry(outcomes)

    async def _lookup_failures(self, failed: Mapping[str, TaobaoError], report: PushReport) -> None:
        if not failed:
            return
        stock = await self._ledger.stock(failed)
        by_retry: dict[float, dict[str, int]] = {}
        for code, exc in failed.items():
            state, retry_s = _failure_policy(exc)
            report.skus[code] = SkuPush(code, state, None, stock[code].version, error=str(exc))
            by_retry.setdefault(retry_s, {})[code] = stock[code].version
        for retry_s, read in by_retry.items():
            await self._ledger.reschedule(read, self._clock_ms() + int(retry_s * 1000))
        bans = [e.retry_after_s for e in failed.values() if isinstance(e, TaobaoCallLimited)]
        if bans:
            report.retry_after_s = max(bans)

    async def _unmapped(self, codes: list[str], report: PushReport) -> None:
        if not codes:
            return
        stock = await self._ledger.stock(codes)
        for code in codes:
            report.skus[code] = SkuPush(code, TaobaoState.UNMAPPED, None, stock[code].version)
        # Kept pending: once the merchant lists the code, the next attempt pushes it.
        until = self._clock_ms() + self._settings.unmapped_retry_s * 1000
        await self._ledger.reschedule({c: stock[c].version for c in codes}, until)

    # ------------------------------------------------------------------ one item

    async def _guarded(
        self, num_iid: int, skus: dict[SkuKey, str], links: list[SpanContext]
    ) -> _ItemOutcome:
        try:
            return await self._push_item(num_iid, skus, links)
        except DependencyError:
            raise
        except Exception as exc:
            # A bug or a malformed answer must not stop the other items or the loop.
            log.exception("pushing item %s failed unexpectedly", num_iid)
            error = TaobaoError(f"unexpected {type(exc).__name__}", method="push")
            read: dict[str, int | None] = dict.fromkeys(skus.values())
            stock = await self._ledger.stock(skus.values())
            read.update({code: stock[code].version for code in skus.values()})
            return _ItemOutcome(num_iid, read, {}, TaobaoState.FAILED, FAILED_RETRY_S, error)

    async def _push_item(
        self, num_iid: int, skus: dict[SkuKey, str], links: list[SpanContext]
    ) -> _ItemOutcome:
        parent = set_span_in_context(NonRecordingSpan(links[0])) if links else None
        with (
            self._tracer.start_as_current_span(
                "taobao push item",
                context=parent,
                links=[Link(ctx) for ctx in links[1:]],
                attributes={"taobao.num_iid": num_iid, "sku.codes": sorted(skus.values())},
            ),
            record_calls() as journal,
        ):
            lease = self._keys.push_lease(num_iid)
            token = await self._leases.acquire(lease, self._settings.push_lease_s)
            if token is None:
                # Another replica is pushing this item; our codes stay pending, retried soon.
                read: dict[str, int | None] = dict.fromkeys(skus.values())
                return _ItemOutcome(num_iid, read, {}, TaobaoState.PENDING, LEASE_BUSY_RETRY_S)
            lost = asyncio.Event()
            keeper = asyncio.create_task(self._keep(lease, token, lost))
            try:
                outcome = await self._push_leased(num_iid, skus)
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                await self._leases.release(lease, token)
            outcome.calls = _calls(journal)
            if lost.is_set() and outcome.state in _SYNCED:
                # Someone else may have pushed a newer version meanwhile: confirm nothing,
                # push again (the next attempt reads the newest ledger state).
                outcome.state, outcome.retry_s = TaobaoState.PENDING, 0.0
            return outcome

    async def _keep(self, lease: str, token: str, lost: asyncio.Event) -> None:
        ttl = self._settings.push_lease_s
        while True:
            await asyncio.sleep(ttl / 3)
            if not await self._leases.renew(lease, token, ttl):
                log.warning("lost the push lease %s", lease)
                lost.set()
                return

    async def _push_leased(self, num_iid: int, skus: dict[SkuKey, str]) -> _ItemOutcome:
        stock = await self._ledger.stock(set(skus.values()))
        read: dict[str, int | None] = {code: stock[code].version for code in skus.values()}
        targets = {key: self._target(stock[code]) for key, code in skus.items()}
        by_code = {code: targets[key] for key, code in skus.items()}
        try:
            plan, kinds = await self._execute(num_iid, targets)
        except TaobaoError as exc:
            state, retry_s = _failure_policy(exc)
            if (exc.sub_code or "").startswith(_ITEM_GONE):
                await self._mapping.forget(skus.values())
            return _ItemOutcome(num_iid, read, by_code, state, retry_s, exc)
        state = TaobaoState.HAND_DELISTED if plan.hand_delisted else TaobaoState.SYNCED
        version = max((v for v in read.values() if v is not None), default=0)
        codes = tuple(sorted(skus.values()))
        transitions = [ItemTransition(num_iid, kind, codes, version) for kind in kinds]
        return _ItemOutcome(num_iid, read, by_code, state, transitions=transitions)

    def _view(self, num_iid: int, state: Mapping[str, str]) -> ItemView:
        return _view(num_iid, state, self._slack_ms)

    def _target(self, stock: SkuStock) -> int:
        return target(stock.available, self._settings.safety_stock)

    async def _execute(
        self, num_iid: int, targets: dict[SkuKey, int]
    ) -> tuple[ItemPlan, list[Transition]]:
        state = await self._items.load(num_iid)
        if "on_sale" not in state:
            state = await self._refresh(num_iid)
        plan = plan_item(self._view(num_iid, state), targets)
        if any(isinstance(a, Delist | Relist) for a in plan.actions) or plan.hand_delisted:
            # Shelf changes are decided on the item as Taobao shows it now, never on a cache.
            state = await self._refresh(num_iid)
            plan = plan_item(self._view(num_iid, state), targets)
        try:
            return plan, await self._run(num_iid, plan, state)
        except TaobaoCallerError as exc:
            if _ZERO_FORBIDDEN not in (exc.sub_code or ""):
                raise
            # Our picture of the other SKUs was stale: re-plan once on a fresh read.
            state = await self._refresh(num_iid)
            plan = plan_item(self._view(num_iid, state), targets)
            return plan, await self._run(num_iid, plan, state)

    async def _run(
        self, num_iid: int, plan: ItemPlan, state: Mapping[str, str]
    ) -> list[Transition]:
        transitions: list[Transition] = []
        view = self._view(num_iid, state)
        for action in plan.actions:
            if isinstance(action, Delist):
                await self._delist(num_iid)
                transitions.append(Transition.DELISTED)
            elif isinstance(action, Relist):
                await self._client.list_item(num_iid, action.num)
                fields: dict[str, str | int] = {"on_sale": 1, "delisted_by_us": 0}
                if not view.has_skus:
                    fields["q:-"] = action.num  # listing set the quantity
                await self._items.save(num_iid, fields)
                transitions.append(Transition.RELISTED)
            else:
                await self._set_stock(num_iid, action, view, locked=self._locked(state))
        if plan.hand_delisted:
            transitions.append(Transition.HAND_DELISTED)
        return transitions

    async def _delist(self, num_iid: int) -> None:
        # The marker goes first: a crash right after the call must still read as "ours",
        # or the item would be taken for hand-delisted and never relisted.
        await self._items.save(num_iid, {"delisted_by_us": 1, "delisted_at_ms": self._clock_ms()})
        try:
            change = await self._client.delist_item(num_iid)
        except (TaobaoTransientError, TaobaoUnknownOutcome, TaobaoCallLimited):
            raise  # it may have happened: keep the marker
        except TaobaoError:
            await self._items.save(num_iid, {"delisted_by_us": 0})
            raise
        at_ms = int(change.modified.timestamp() * 1000) if change.modified else self._clock_ms()
        await self._items.save(num_iid, {"on_sale": 0, "delisted_at_ms": at_ms})

    def _locked(self, state: Mapping[str, str]) -> bool:
        locked_ms = state.get("locked_ms")
        # A lock (presale, campaign) ends; try a full update again after a while.
        ttl_ms = self._settings.mapping_ttl_s * 1000
        return bool(locked_ms) and self._clock_ms() - int(locked_ms or 0) < ttl_ms

    async def _set_stock(
        self, num_iid: int, action: SetStock, view: ItemView, *, locked: bool
    ) -> None:
        if not locked:
            try:
                await self._full_update(num_iid, action.quantities, view)
            except TaobaoFullUpdateForbidden:
                # Presale or campaign lock: remember it, so later pushes go straight to
                # increments instead of paying for a refused call each time.
                await self._items.save(num_iid, {"locked_ms": self._clock_ms()})
            else:
                return
        await self._increment_to(num_iid, action.quantities)

    async def _full_update(
        self, num_iid: int, quantities: Mapping[SkuKey, int], view: ItemView
    ) -> None:
        if None in quantities:
            result = await self._client.update_quantity(num_iid, quantities[None])
            await self._items.save(num_iid, {"q:-": result.num or 0})
            return
        # Increases first: with several calls (20 SKUs each), the item's total must never
        # pass through zero while it is on sale.
        ordered = sorted(
            ((k, q) for k, q in quantities.items() if k is not None),
            key=lambda kq: kq[1] - view.quantities.get(kq[0], 0),
            reverse=True,
        )
        result = await self._client.update_sku_quantities(num_iid, dict(ordered))
        fields: dict[str, str | int] = {f"q:{s.sku_id}": s.quantity for s in result.skus}
        await self._items.save(num_iid, fields or {"q:-": 0})

    async def _increment_to(self, num_iid: int, targets: Mapping[SkuKey, int]) -> None:
        """Reach absolute targets with increments, safe against unknown outcomes.

        Reads the item first and increments by (target - what Taobao shows). After an
        unknown outcome nothing more is sent in this push: the increment may still be in
        flight, so the next attempt (seconds later) reads again and sends only what is
        still missing.
        """
        current = await self._current_quantities(num_iid)
        previous = await self._items.intent(num_iid)
        if previous:
            log.info("item %s: resolving an earlier increment by reading back", num_iid)
        deltas = {k: t - current.get(k, 0) for k, t in targets.items() if t != current.get(k, 0)}
        if deltas:
            await self._items.record_intent(
                num_iid, {k: f"{current.get(k, 0)}{d:+d}" for k, d in deltas.items()}
            )
            for key, delta in deltas.items():
                await self._client.update_quantity(num_iid, delta, sku_id=key, incremental=True)
        await self._items.clear_intent(num_iid)
        await self._items.save(num_iid, {f"q:{_sku_field(k)}": t for k, t in targets.items()})

    async def _current_quantities(self, num_iid: int) -> dict[SkuKey, int]:
        item = await self._client.get_item(num_iid)
        if item.skus:
            return {s.sku_id: s.quantity or 0 for s in item.skus}
        return {None: item.num or 0}

    async def _refresh(self, num_iid: int) -> dict[str, str]:
        item = await self._client.get_item(num_iid)
        fields: dict[str, str | int] = {
            "on_sale": int(item.on_sale),
            "has_skus": int(bool(item.skus)),
            "checked_ms": self._clock_ms(),
        }
        if item.on_sale:
            fields["delisted_by_us"] = 0  # on sale again: any earlier delisting is history
        if item.delist_time is not None:
            fields["tb_delist_ms"] = int(item.delist_time.timestamp() * 1000)
        if item.skus:
            fields.update({f"q:{s.sku_id}": s.quantity or 0 for s in item.skus})
        else:
            fields["q:-"] = item.num or 0
        await self._items.save(num_iid, fields)
        return await self._items.load(num_iid)


def _app_wide_retry(outcomes: list[_ItemOutcome]) -> float | None:
    """A ban stops every call; so does an outage (every item failed on the platform's side).
    One item's own failure is handled by rescheduling that item alone."""
    bans = [o.retry_s for o in outcomes if isinstance(o.error, TaobaoCallLimited)]
    if bans:
        return max(bans)
    failed = [o for o in outcomes if o.error is not None]
    transient = [
        o for o in failed if isinstance(o.error, TaobaoTransientError | TaobaoUnknownOutcome)
    ]
    if outcomes and len(transient) == len(outcomes):
        return TRANSIENT_RETRY_S
    return None
