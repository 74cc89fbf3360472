"""Taobao as a projection of the ledger: push pending SKUs, item by item.

For each Taobao item touched, under a lease that makes one replica at a time push it:

1. read the item's SKUs from the ledger *after* taking the lease, so the quantities pushed
   are the newest (pushes of one item are serialised, and each reads the ledger afresh);
   the lease is renewed in the background, and a push that lost it confirms nothing, so
   an update computed from an older version can never be recorded as the latest;
2. plan and make the calls (``connector.push.planner``, ``connector.push.item_push``): full
   updates of absolute quantities (increases
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
``retry_after_s``, so the projection loop waits instead of spinning (ingest never waits).
Each item pushed under its lease is reported as an ``ItemPush`` (its push record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Tracer, set_span_in_context

from connector.contracts.records import TaobaoState
from connector.errors import (
    DependencyError,
    LedgerLost,
    TaobaoCallLimited,
    TaobaoError,
)
from connector.keys import Keys
from connector.ledger.ledger import Ledger
from connector.ledger.outcomes import PushBase, SkuStock
from connector.push.base_store import BaseStore
from connector.push.bases import listing_key
from connector.push.item_outcome import (
    FAILED_RETRY_S,
    ITEM_GONE,
    LEASE_BUSY_RETRY_S,
    RANK,
    SYNCED,
    ItemOutcome,
    app_wide_error,
    app_wide_retry,
    calls_of,
    error_class,
    failure_policy,
    item_push,
    not_pushed,
)
from connector.push.item_push import Bases, ItemPusher, LeaseLost
from connector.push.items import OWN_DELIST_SLACK_MS, ItemStates, SkuKey
from connector.push.leases import Leases
from connector.push.mapping import MappingCache
from connector.push.outcomes import (
    ItemTransition,
    PushReport,
    SkuPush,
    Transition,
)
from connector.push.planner import target
from connector.redis_client import AsyncRedis
from connector.settings import SyncSettings
from connector.taobao.client import TopClient, record_calls
from connector.telemetry import get_tracer, inject_context, trace_id_of

__all__ = ["TaobaoProjection", "error_class"]

log = logging.getLogger(__name__)

_E = TypeVar("_E", bound=BaseException)
WITHHELD_RETRY_S = 60.0
# How long no Taobao order may have come on a listing before an ambiguous base is
# re-anchored by an absolute write (longer than the bridge takes to bring an order in).
REANCHOR_QUIET_S = 15.0
REANCHOR_MAX_S = 300.0  # ... and after this long whatever (its write has the usual window)


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
        own_delist_slack_ms: int = OWN_DELIST_SLACK_MS,
        on_item_done: Callable[[], None] = lambda: None,
        increments: bool = False,
        reanchor_quiet_s: float = REANCHOR_QUIET_S,
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._mapping = mapping
        self._pusher = ItemPusher(
            client=client,
            items=ItemStates(redis, keys),
            settings=settings,
            clock_ms=clock_ms,
            own_delist_slack_ms=own_delist_slack_ms,
        )
        self._leases = Leases(redis)
        # By increments against Taobao's own deductions (connector/push/bases.py): when
        # Taobao-side orders reach the ledger with their listing (the TMC bridge).
        self._bases = BaseStore(redis, keys) if increments else None
        self._reanchor_quiet_s = reanchor_quiet_s
        self._keys = keys
        self._settings = settings
        self._tracer = tracer or get_tracer()
        self._clock_ms = clock_ms
        # Called after each item is pushed: a push of many items under the call budget can
        # take minutes, and the projection's stall check must see it is moving.
        self._on_item_done = on_item_done

    # ------------------------------------------------------------------ entry points

    async def push(
        self,
        codes: Collection[str],
        *,
        parents: Mapping[str, Sequence[SpanContext]] | None = None,
        stop: asyncio.Event | None = None,
    ) -> PushReport:
        """Bring Taobao in line with the ledger for ``codes``.

        ``parents`` are the span contexts of the input events that changed each code: the
        item's push span is linked to them. Once ``stop`` is set no further item is
        started (the ones in flight finish); the others stay pending as they were."""
        report = PushReport()
        if not codes:
            return report
        resolution = await self._mapping.resolve(codes)
        await self._unmapped([c for c, found in resolution.found.items() if not found], report)
        by_item: dict[int, dict[SkuKey, str]] = {}
        for code, listings in resolution.found.items():
            for listing in listings:
                by_item.setdefault(listing.num_iid, {})[listing.sku_id] = code
        limited = asyncio.Event()  # a call limit was hit: start no further item
        if any(_stops_all(e) for e in resolution.failed.values()):
            limited.set()
        outcomes = await self._push_items(by_item, parents or {}, stop, limited)
        leased = [o for o in outcomes if o.leased]
        report.retry_after_s, report.limited = app_wide_retry(leased, resolution.failed)
        # An app-wide condition delays everything (the loop waits it out): the codes it
        # stopped keep their place in the pending set, oldest change first, untouched.
        app_wide = report.retry_after_s is not None
        await self._lookup_failures(resolution.failed, report, app_wide=app_wide)
        await self._settle(outcomes, report, app_wide=app_wide)
        return report

    # ------------------------------------------------------------------ combining

    async def _push_items(
        self,
        by_item: dict[int, dict[SkuKey, str]],
        parents: Mapping[str, Sequence[SpanContext]],
        stop: asyncio.Event | None,
        limited: asyncio.Event,
    ) -> list[ItemOutcome]:
        limit = asyncio.Semaphore(self._settings.push_concurrency)

        async def one(num_iid: int, skus: dict[SkuKey, str]) -> ItemOutcome:
            async with limit:
                if limited.is_set() or (stop is not None and stop.is_set()):
                    return not_pushed(num_iid, skus)
                links = [ctx for code in skus.values() for ctx in parents.get(code, ())]
                outcome = await self._guarded(num_iid, skus, links)
                if outcome.error is not None and _stops_all(outcome.error):
                    limited.set()
                self._on_item_done()
                return outcome

        # A TaskGroup cancels the other pushes if one raises (only Redis being down does),
        # so no orphaned push goes on holding a lease.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(n, s)) for n, s in by_item.items()]
        except BaseExceptionGroup as group_error:
            # Hand the loop the error itself (it stops on a lost ledger and retries Redis
            # being down), not the group.
            for kind in (LedgerLost, DependencyError):
                found = group_error.subgroup(kind)
                if found is not None:
                    raise _first(found) from group_error
            raise
        return [task.result() for task in tasks]

    async def _settle(
        self, outcomes: list[ItemOutcome], report: PushReport, *, app_wide: bool
    ) -> None:
        """Combine items per code; confirm what fully succeeded, reschedule the rest."""
        by_code: dict[str, list[ItemOutcome]] = {}
        for outcome in outcomes:
            for code in outcome.read:
                by_code.setdefault(code, []).append(outcome)
            report.transitions.extend(outcome.transitions)
        confirm: dict[str, int] = {}
        retry: dict[float, dict[str, int]] = {}
        busy: list[str] = []
        for code, items in by_code.items():
            versions = [o.read[code] for o in items]
            worst = max(items, key=lambda o: RANK[o.state])
            known = [v for v in versions if v is not None]
            retry_s = max(o.retry_s for o in items)
            if worst.state in SYNCED and len(known) == len(versions):
                confirm[code] = min(known)
            elif app_wide and all(o.error is None or app_wide_error(o.error) for o in items):
                pass  # left where it is: the loop waits the condition out
            elif known:
                retry.setdefault(retry_s, {})[code] = min(known)
            elif retry_s > 0:
                busy.append(code)  # another replica holds its item: retried shortly
            report.skus[code] = SkuPush(
                code,
                worst.state,
                next((o.targets[code] for o in items if code in o.targets), None),
                min(known) if known else None,
                tuple(c for o in items for c in o.calls),
                str(worst.error) if worst.error else None,
            )
        await self._ledger.confirm(confirm)
        if busy:
            # Not read under a lease, so reschedule at the current version: a change after
            # this still brings the SKU forward (ledger_apply.lua's ZADD LT).
            stock = await self._ledger.stock(busy)
            retry.setdefault(LEASE_BUSY_RETRY_S, {}).update({c: stock[c].version for c in busy})
        now_ms = self._clock_ms()
        for retry_s, read in retry.items():
            await self._ledger.reschedule(read, now_ms + int(retry_s * 1000))
        await self._ledger.record_taobao(
            {
                # The quantity only when Taobao took it: results say what Taobao was told.
                code: (push.version, push.state.value, push.quantity if code in confirm else None)
                for code, push in report.skus.items()
                if push.version is not None
            }
        )
        report.items = [item_push(o, confirm, now_ms) for o in outcomes if o.leased]

    async def _lookup_failures(
        self, failed: Mapping[str, TaobaoError], report: PushReport, *, app_wide: bool
    ) -> None:
        if not failed:
            return
        stock = await self._ledger.stock(failed)
        by_retry: dict[float, dict[str, int]] = {}
        for code, exc in failed.items():
            state, retry_s = failure_policy(exc)
            report.skus[code] = SkuPush(code, state, None, stock[code].version, error=str(exc))
            if not (app_wide and app_wide_error(exc)):
                by_retry.setdefault(retry_s, {})[code] = stock[code].version
        for retry_s, read in by_retry.items():
            await self._ledger.reschedule(read, self._clock_ms() + int(retry_s * 1000))

    async def _unmapped(self, codes: list[str], report: PushReport) -> None:
        if not codes:
            return
        stock = await self._ledger.stock(codes)
        for code in codes:
            report.skus[code] = SkuPush(code, TaobaoState.UNMAPPED, None, stock[code].version)
            report.unmapped[code] = stock[code].version
        # Kept pending: once the merchant lists the code, the next attempt pushes it.
        until = self._clock_ms() + self._settings.unmapped_retry_s * 1000
        await self._ledger.reschedule({c: stock[c].version for c in codes}, until)

    # ------------------------------------------------------------------ one item

    async def _guarded(
        self, num_iid: int, skus: dict[SkuKey, str], links: list[SpanContext]
    ) -> ItemOutcome:
        try:
            return await self._push_item(num_iid, skus, links)
        except (DependencyError, LedgerLost):
            raise
        except Exception as exc:
            # A bug or a malformed answer must not stop the other items or the loop.
            log.exception("pushing item %s failed unexpectedly", num_iid)
            error = TaobaoError(f"unexpected {type(exc).__name__}", method="push")
            read: dict[str, int | None] = dict.fromkeys(skus.values())
            stock = await self._ledger.stock(skus.values())
            read.update({code: stock[code].version for code in skus.values()})
            return ItemOutcome(num_iid, read, {}, TaobaoState.FAILED, FAILED_RETRY_S, error)

    async def _push_item(
        self, num_iid: int, skus: dict[SkuKey, str], links: list[SpanContext]
    ) -> ItemOutcome:
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
            span = trace.get_current_span()
            trace_id, trace_headers = trace_id_of(span), inject_context(span)
            lease = self._keys.push_lease(num_iid)
            token = await self._leases.acquire(lease, self._settings.push_lease_s)
            if token is None:
                # Another replica is pushing this item; our codes stay pending, retried soon.
                busy = not_pushed(num_iid, skus)
                busy.retry_s = LEASE_BUSY_RETRY_S
                return busy
            lost = asyncio.Event()
            keeper = asyncio.create_task(self._keep(lease, token, lost))
            try:
                outcome = await self._push_leased(num_iid, skus, lost)
                # Still ours at the end? If not, another replica may have pushed a newer
                # version while our last call was on its way, and ours may have landed last.
                if not lost.is_set() and not await self._leases.renew(
                    lease, token, self._settings.push_lease_s
                ):
                    lost.set()
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                await self._leases.release(lease, token)
            outcome.calls = calls_of(journal)
            outcome.finished_ms = self._clock_ms()
            outcome.listings = {code: key for key, code in skus.items()}
            outcome.trace_id, outcome.trace_headers = trace_id, trace_headers
            outcome.event_trace_ids = tuple(dict.fromkeys(f"{c.trace_id:032x}" for c in links))
            if lost.is_set():
                # Someone else may have pushed a newer version meanwhile: confirm nothing,
                # and push the item again whatever the ledger records as confirmed (the
                # next attempt reads the newest ledger state; a full update is harmless).
                log.warning("lost the push lease of item %s: pushing it again", num_iid)
                await self._ledger.force_pending(skus.values())
                if outcome.state in SYNCED:
                    outcome.state, outcome.retry_s = TaobaoState.PENDING, 0.0
            return outcome

    async def _keep(self, lease: str, token: str, lost: asyncio.Event) -> None:
        ttl = self._settings.push_lease_s
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                held = await self._leases.renew(lease, token, ttl)
            except DependencyError:
                held = False  # cannot tell: behave as if lost, never as if held
            if not held:
                lost.set()  # the push stops before its next write (see ItemPusher)
                return

    async def _push_leased(
        self, num_iid: int, skus: dict[SkuKey, str], lost: asyncio.Event
    ) -> ItemOutcome:
        stock = await self._ledger.stock(set(skus.values()))
        read: dict[str, int | None] = {code: stock[code].version for code in skus.values()}
        targets = {key: self._target(stock[code]) for key, code in skus.items()}
        by_code = {code: targets[key] for key, code in skus.items()}
        bases, unsettled = None, False
        if self._bases is not None:
            known, unsettled = self._settled_bases(num_iid, skus, stock)
            bases = Bases(num_iid, skus, known, self._bases)
        try:
            plan, kinds = await self._pusher.execute(num_iid, targets, lease_lost=lost, bases=bases)
        except LeaseLost:
            return ItemOutcome(num_iid, read, by_code, TaobaoState.PENDING)
        except TaobaoError as exc:
            state, retry_s = failure_policy(exc)
            if (exc.sub_code or "").startswith(ITEM_GONE):
                await self._mapping.forget(skus.values())
            return ItemOutcome(num_iid, read, by_code, state, retry_s, exc)
        state = TaobaoState.HAND_DELISTED if plan.hand_delisted else TaobaoState.SYNCED
        version = max((v for v in read.values() if v is not None), default=0)
        codes = tuple(sorted(skus.values()))
        transitions = [ItemTransition(num_iid, kind, codes, version) for kind in kinds]
        if unsettled:
            # Pushed on a base that may count an order twice (Taobao shows less, never
            # more): pushed again, absolutely, once Taobao's orders on it go quiet.
            return ItemOutcome(
                num_iid,
                read,
                by_code,
                TaobaoState.PENDING,
                self._reanchor_quiet_s,
                transitions=transitions,
            )
        if Transition.WITHHELD in kinds:
            # Taobao took the holds, not the targets: pushed again until the holds are
            # paid or released and the targets go in.
            return ItemOutcome(
                num_iid,
                read,
                by_code,
                TaobaoState.PENDING,
                WITHHELD_RETRY_S,
                transitions=transitions,
            )
        return ItemOutcome(num_iid, read, by_code, state, transitions=transitions)

    def _settled_bases(
        self, num_iid: int, skus: Mapping[SkuKey, str], stock: Mapping[str, SkuStock]
    ) -> tuple[dict[SkuKey, PushBase | None], bool]:
        """Each SKU's base; an ambiguous one (a Taobao order in the second of its absolute
        write) is dropped for a fresh absolute write once no Taobao order has come on it
        for ``REANCHOR_QUIET_S``, so that the write erases nothing. Whether one is still
        ambiguous (not quiet yet)."""
        now_ms = self._clock_ms()
        known: dict[SkuKey, PushBase | None] = {}
        unsettled = False
        for key, code in skus.items():
            listing = listing_key(num_iid, key)
            found = stock[code]
            known[key] = found.bases.get(listing)
            if listing in found.ambiguous and known[key] is not None:
                last = found.taobao_orders_ms.get(listing, 0)
                quiet = now_ms - last >= self._reanchor_quiet_s * 1000
                # A listing that never goes quiet is re-anchored all the same, in time.
                overdue = now_ms - found.ambiguous[listing] >= REANCHOR_MAX_S * 1000
                if quiet or overdue:
                    known[key] = None
                else:
                    unsettled = True
        return known, unsettled

    def _target(self, stock: SkuStock) -> int:
        return target(stock.available, self._settings.safety_stock)


def _stops_all(exc: BaseException) -> bool:
    """A call limit on the app (not one API's, nor the quota share reads give up)."""
    return isinstance(exc, TaobaoCallLimited) and exc.app_wide


def _first(group: BaseExceptionGroup[_E]) -> _E:
    first: _E | BaseExceptionGroup[_E] = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first
