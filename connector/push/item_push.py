"""Carrying out one item's push once its lease is held: plan, shelf changes, stock calls.

The quantities are absolute (a retry of a full update is harmless). Any shelf change is
re-planned on the item as Taobao shows it right now; an item that refuses full updates
(presale, campaign) gets increments, with the intent recorded before the call and an
unknown outcome resolved by reading the item back (see ``_increment_to``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from connector.errors import (
    TaobaoAuthError,
    TaobaoCallerError,
    TaobaoCallLimited,
    TaobaoError,
    TaobaoFullUpdateForbidden,
    TaobaoSessionError,
    TaobaoTransientError,
    TaobaoUnknownOutcome,
)
from connector.ledger.outcomes import PushBase
from connector.push.base_store import BaseStore
from connector.push.bases import FLOORED, increments, listing_key
from connector.push.items import OWN_DELIST_SLACK_MS, ItemStates, SkuKey, item_view, sku_field
from connector.push.outcomes import Transition
from connector.push.planner import Delist, ItemPlan, ItemView, Relist, SetStock, plan_item
from connector.settings import SyncSettings
from connector.taobao.client import SKUS_PER_UPDATE, TopClient
from connector.taobao.models import ItemQuantity

__all__ = ["Bases", "ItemPusher", "LeaseLost"]

log = logging.getLogger(__name__)

_ZERO_FORBIDDEN: Final = "FORBIDDEN_QUANTITY_ZERO_ERROR"
_WITHHELD: Final = "isv.error-inventory-invalid-item-quantity"  # reference §3.1
CLOCK_MARGIN_MS: Final = 2_000
_LEASE_LOST: ContextVar[asyncio.Event | None] = ContextVar("push_lease_lost", default=None)


class LeaseLost(Exception):
    """The item's lease was lost mid-push: no further write may be sent."""


def _fence() -> None:
    lost = _LEASE_LOST.get()
    if lost is not None and lost.is_set():
        raise LeaseLost


@dataclass(frozen=True, slots=True)
class Bases:
    """One item's push bases (``connector.push.bases``): per SKU its merchant code, its
    base (``None``: unknown, the next write is absolute), and where they are written."""

    num_iid: int
    codes: Mapping[SkuKey, str]
    known: Mapping[SkuKey, PushBase | None]
    store: BaseStore

    def absolute(self) -> Bases:
        return Bases(self.num_iid, self.codes, dict.fromkeys(self.known), self.store)

    def _pair(self, key: SkuKey) -> tuple[str, str]:
        return self.codes[key], listing_key(self.num_iid, key)

    async def written(self, quantities: Mapping[SkuKey, int], at_ms: int) -> None:
        await self.store.written({self._pair(k): q for k, q in quantities.items()}, at_ms)

    async def begin(self, deltas: Mapping[SkuKey, int]) -> None:
        await self.store.begin({self._pair(k): d for k, d in deltas.items()})

    async def undo(self, deltas: Mapping[SkuKey, int]) -> None:
        await self.store.undo({self._pair(k): d for k, d in deltas.items()})

    async def done(self, keys: Iterable[SkuKey]) -> None:
        await self.store.done([self._pair(k) for k in keys])

    async def forget(self, keys: Iterable[SkuKey]) -> None:
        await self.store.forget([self._pair(k) for k in keys])


def _quantities(result: ItemQuantity) -> dict[SkuKey, int]:
    if result.skus:
        return {s.sku_id: s.quantity for s in result.skus}
    return {None: result.num or 0}


class ItemPusher:
    """Brings one Taobao item to its targets (the caller holds the item's lease).

    Every write (stock, delist, relist) is fenced: once the caller says the lease is lost,
    the next write raises ``LeaseLost`` instead of going out, so at most the call already in
    flight can land after another replica's push (and the caller then pushes again).
    """

    def __init__(
        self,
        *,
        client: TopClient,
        items: ItemStates,
        settings: SyncSettings,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        own_delist_slack_ms: int = OWN_DELIST_SLACK_MS,
    ) -> None:
        self._client = client
        self._items = items
        self._settings = settings
        self._clock_ms = clock_ms
        self._slack_ms = own_delist_slack_ms

    def _view(self, num_iid: int, state: Mapping[str, str]) -> ItemView:
        return item_view(num_iid, state, self._slack_ms)

    async def execute(
        self,
        num_iid: int,
        targets: dict[SkuKey, int],
        *,
        lease_lost: asyncio.Event,
        bases: Bases | None = None,
    ) -> tuple[ItemPlan, list[Transition]]:
        """Plan and make the item's calls; ``lease_lost`` fences every write. With
        ``bases`` the stock goes by increments where each SKU's base is known."""
        token = _LEASE_LOST.set(lease_lost)  # per task: items are pushed concurrently
        try:
            return await self._execute(num_iid, targets, bases)
        finally:
            _LEASE_LOST.reset(token)

    async def _execute(
        self, num_iid: int, targets: dict[SkuKey, int], bases: Bases | None
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
            return plan, await self._run(num_iid, plan, state, bases)
        except TaobaoCallerError as exc:
            if _ZERO_FORBIDDEN not in (exc.sub_code or ""):
                raise
            # Our picture of the other SKUs was stale (or, by increments, Taobao sold what
            # the ledger has not heard of yet): re-plan once on a fresh read, absolutely.
            state = await self._refresh(num_iid)
            plan = plan_item(self._view(num_iid, state), targets)
            absolute = None if bases is None else bases.absolute()
            return plan, await self._run(num_iid, plan, state, absolute)

    async def _run(
        self, num_iid: int, plan: ItemPlan, state: Mapping[str, str], bases: Bases | None
    ) -> list[Transition]:
        transitions: list[Transition] = []
        view = self._view(num_iid, state)
        for action in plan.actions:
            if isinstance(action, Delist):
                await self._delist(num_iid)
                transitions.append(Transition.DELISTED)
            elif isinstance(action, Relist):
                _fence()
                change = await self._client.list_item(num_iid, action.num)
                fields: dict[str, str | int] = {"on_sale": 1, "delisted_by_us": 0}
                if not view.has_skus:
                    fields["q:-"] = action.num  # listing set the quantity
                    await self._items.record_writes(num_iid, {None: action.num}, self._clock_ms())
                    if bases is not None:
                        await bases.written({None: action.num}, self._taobao_ms(change.modified))
                await self._items.save(num_iid, fields)
                transitions.append(Transition.RELISTED)
            else:
                # By increments, the ledger counts the orders Taobao holds stock for on an
                # item deducted on payment: an absolute write adds the holds back.
                holds = bases is not None and state.get("sub_stock") == "2"
                transitions += await self._set_stock(
                    num_iid, action, view, self._locked(state), bases, holds=holds
                )
        if plan.hand_delisted:
            transitions.append(Transition.HAND_DELISTED)
        return transitions

    async def _delist(self, num_iid: int) -> None:
        # The marker goes first: a crash right after the call must still read as "ours",
        # or the item would be taken for hand-delisted and never relisted.
        _fence()
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
        self,
        num_iid: int,
        action: SetStock,
        view: ItemView,
        locked: bool,
        bases: Bases | None,
        *,
        holds: bool = False,
    ) -> list[Transition]:
        """Set the stock; what it took beside (a delisting at a sell-out Taobao made, a
        target raised to what unpaid orders hold). With ``holds`` an absolute write sets
        each SKU to its target plus what unpaid orders hold there: Taobao sells the
        quantity less the holds, and the ledger's target already counts those orders."""
        # (A locked item takes increments too: only full updates are refused.)
        deltas = None if bases is None else increments(action.quantities, bases.known)
        if deltas is not None and bases is not None:
            try:
                delisted = await self._by_increments(num_iid, deltas, view, bases)
            except TaobaoCallerError as exc:
                if _WITHHELD not in (exc.sub_code or ""):
                    raise
                # (Its bases are forgotten: the write below is absolute, with the holds.)
            else:
                return [Transition.DELISTED] if delisted else []
        quantities = dict(action.quantities)
        if holds:
            quantities = await self._plus_holds(num_iid, quantities)
        result: ItemQuantity | None = None
        read_ms: int | None = None
        held = False
        if not locked:
            try:
                try:
                    result = await self._full_update(num_iid, quantities, view)
                except TaobaoCallerError as exc:
                    if _WITHHELD not in (exc.sub_code or ""):
                        raise
                    quantities, held = await self._with_holds(num_iid, quantities), True
                    result = await self._full_update(num_iid, quantities, view)
            except TaobaoFullUpdateForbidden:
                # Presale lock: remember it, so later pushes go straight to increments
                # instead of paying for a refused call each time.
                await self._items.save(num_iid, {"locked_ms": self._clock_ms()})
        if result is None:
            result, read_ms = await self._increment_to(num_iid, quantities)
        if bases is not None:
            # An absolute write: the bases start again from it (connector/push/bases.py).
            modified = result.modified if result is not None else None
            at_ms = self._taobao_ms(modified) if modified or read_ms is None else read_ms
            await bases.written(quantities, at_ms)
        return [Transition.WITHHELD] if held else []

    async def _holds(self, num_iid: int) -> dict[SkuKey, int]:
        """What unpaid orders hold per SKU (付款减库存), read now."""
        item = await self._client.get_item(num_iid)
        found: dict[SkuKey, int] = {s.sku_id: s.with_hold_quantity for s in item.skus}
        if not item.skus:
            found[None] = item.with_hold_quantity
        return found

    async def _plus_holds(self, num_iid: int, targets: Mapping[SkuKey, int]) -> dict[SkuKey, int]:
        held = await self._holds(num_iid)
        return {k: q + held.get(k, 0) for k, q in targets.items()}

    async def _with_holds(self, num_iid: int, targets: Mapping[SkuKey, int]) -> dict[SkuKey, int]:
        """Taobao refuses a quantity below what unpaid orders hold (付款减库存): the lowest
        it allows is the hold itself, which leaves nothing for sale."""
        holds = await self._holds(num_iid)
        raised = {k: max(q, holds.get(k, 0)) for k, q in targets.items()}
        log.warning(
            "item %s: unpaid orders hold more than the targets %s; setting %s",
            num_iid,
            dict(targets),
            raised,
        )
        return raised

    async def _by_increments(
        self, num_iid: int, deltas: Mapping[SkuKey, int], view: ItemView, bases: Bases
    ) -> bool:
        """Send ``target - base`` per SKU: Taobao adds it to whatever it sold meanwhile.

        Each call's increments are recorded before it goes (``Bases.begin``) and settled
        after, one call (20 SKUs) at a time, so a failure part way resends nothing Taobao
        took. An increment that would leave an on-sale item at zero means Taobao sold the
        rest meanwhile: the item is delisted first, as at any sell-out (returns True)."""
        if not deltas:
            return False  # Taobao already moved by what moved the targets: its own orders
        if None in deltas:
            chunks: list[dict[SkuKey, int]] = [{None: deltas[None]}]
        else:
            # Increases first, so an on-sale item's total never passes through zero.
            ordered = sorted(deltas.items(), key=lambda kd: kd[1], reverse=True)
            size = SKUS_PER_UPDATE
            chunks = [dict(ordered[i : i + size]) for i in range(0, len(ordered), size)]
        delisted = False
        for chunk in chunks:
            try:
                await self._increment_chunk(num_iid, chunk, bases)
            except TaobaoCallerError as exc:
                if _ZERO_FORBIDDEN not in (exc.sub_code or "") or delisted or not view.on_sale:
                    raise
                await self._delist(num_iid)
                delisted = True
                await self._increment_chunk(num_iid, chunk, bases)
        return delisted

    async def _increment_chunk(
        self, num_iid: int, deltas: Mapping[SkuKey, int], bases: Bases
    ) -> None:
        _fence()
        await bases.begin(deltas)
        try:
            if None in deltas:
                result = await self._client.update_quantity(num_iid, deltas[None], incremental=True)
            else:
                skus = {k: d for k, d in deltas.items() if k is not None}
                result = await self._client.update_sku_quantities(num_iid, skus, incremental=True)
        except (TaobaoCallLimited, TaobaoTransientError, TaobaoSessionError, TaobaoAuthError):
            await bases.undo(deltas)  # never applied: the same increments go next time
            raise
        except TaobaoCallerError as exc:
            await bases.undo(deltas)
            if _ZERO_FORBIDDEN not in (exc.sub_code or ""):
                # Refused (below what unpaid orders hold, a lock): write absolutely next.
                await bases.forget(deltas)
            raise
        # Anything else (an unknown outcome, a cancellation) leaves them marked in flight:
        # the next push writes absolutely.
        await bases.done(deltas)
        shown = _quantities(result)
        # A batch increment floors at zero: a decrease that left 0 may have sent less
        # than asked, so 0 is where that SKU now stands, as after an absolute write.
        floored = {k: 0 for k, d in deltas.items() if d < 0 and shown.get(k) == FLOORED}
        if floored:
            await bases.written(floored, self._taobao_ms(result.modified))
        await self._items.save(num_iid, {f"q:{sku_field(k)}": q for k, q in shown.items()})
        await self._wrote(num_iid, result, deltas)

    async def _wrote(self, num_iid: int, result: ItemQuantity, keys: Iterable[SkuKey]) -> None:
        """Keep what this write left on the SKUs it set: their messages are the connector's."""
        shown = _quantities(result)
        left = {k: shown[k] for k in keys if k in shown}
        await self._items.record_writes(num_iid, left, self._clock_ms())

    def _taobao_ms(self, modified: datetime | None) -> int:
        """Taobao's time of a write (its ``modified``); without it, ours a little ahead:
        a later time only makes more of the orders around it count as erased by the write,
        so Taobao shows less, never more (connector/push/bases.py)."""
        if modified is not None:
            return int(modified.timestamp() * 1000)
        return self._clock_ms() + CLOCK_MARGIN_MS

    async def _full_update(
        self, num_iid: int, quantities: Mapping[SkuKey, int], view: ItemView
    ) -> ItemQuantity:
        if None in quantities:
            _fence()
            result = await self._client.update_quantity(num_iid, quantities[None])
            await self._items.save(num_iid, {"q:-": result.num or 0})
            await self._wrote(num_iid, result, quantities)
            return result
        # Increases first: with several calls (20 SKUs each), the item's total must never
        # pass through zero while it is on sale.
        ordered = sorted(
            ((k, q) for k, q in quantities.items() if k is not None),
            key=lambda kq: kq[1] - view.quantities.get(kq[0], 0),
            reverse=True,
        )
        _fence()
        result = await self._client.update_sku_quantities(num_iid, dict(ordered))
        fields: dict[str, str | int] = {f"q:{s.sku_id}": s.quantity for s in result.skus}
        await self._items.save(num_iid, fields or {"q:-": 0})
        await self._wrote(num_iid, result, quantities)
        return result

    async def _increment_to(
        self, num_iid: int, targets: Mapping[SkuKey, int]
    ) -> tuple[ItemQuantity | None, int | None]:
        """Reach absolute targets with increments, safe against unknown outcomes.

        Reads the item first and increments by (target - what Taobao shows). After an
        unknown outcome nothing more is sent in this push: the increment may still be in
        flight, so the next attempt (seconds later) reads again and sends only what is
        still missing.
        """
        current, read_ms = await self._current_quantities(num_iid)
        previous = await self._items.intent(num_iid)
        if previous:
            log.info("item %s: resolving an earlier increment by reading back", num_iid)
        deltas = {k: t - current.get(k, 0) for k, t in targets.items() if t != current.get(k, 0)}
        result: ItemQuantity | None = None
        if deltas:
            await self._items.record_intent(
                num_iid, {k: f"{current.get(k, 0)}{d:+d}" for k, d in deltas.items()}
            )
            for key, delta in deltas.items():
                _fence()
                result = await self._client.update_quantity(
                    num_iid, delta, sku_id=key, incremental=True
                )
                await self._wrote(num_iid, result, (key,))
        await self._items.clear_intent(num_iid)
        await self._items.save(num_iid, {f"q:{sku_field(k)}": t for k, t in targets.items()})
        return result, read_ms

    async def _current_quantities(self, num_iid: int) -> tuple[dict[SkuKey, int], int | None]:
        """Taobao's quantities now, and Taobao's time of the item's last change."""
        item = await self._client.get_item(num_iid)
        modified = int(item.modified.timestamp() * 1000) if item.modified else None
        if item.skus:
            return {s.sku_id: s.quantity or 0 for s in item.skus}, modified
        return {None: item.num or 0}, modified

    async def _refresh(self, num_iid: int) -> dict[str, str]:
        item = await self._client.get_item(num_iid)
        fields: dict[str, str | int] = {
            "on_sale": int(item.on_sale),
            "has_skus": int(bool(item.skus)),
            "checked_ms": self._clock_ms(),
        }
        if item.on_sale:
            fields["delisted_by_us"] = 0  # on sale again: any earlier delisting is history
        if item.sub_stock is not None:
            fields["sub_stock"] = item.sub_stock
        if item.delist_time is not None:
            fields["tb_delist_ms"] = int(item.delist_time.timestamp() * 1000)
        if item.skus:
            fields.update({f"q:{s.sku_id}": s.quantity or 0 for s in item.skus})
        else:
            fields["q:-"] = item.num or 0
        await self._items.save(num_iid, fields)
        return await self._items.load(num_iid)
