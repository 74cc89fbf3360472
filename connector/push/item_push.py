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
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Final

from connector.errors import (
    TaobaoCallerError,
    TaobaoCallLimited,
    TaobaoError,
    TaobaoFullUpdateForbidden,
    TaobaoTransientError,
    TaobaoUnknownOutcome,
)
from connector.push.items import OWN_DELIST_SLACK_MS, ItemStates, SkuKey, item_view, sku_field
from connector.push.outcomes import Transition
from connector.push.planner import Delist, ItemPlan, ItemView, Relist, SetStock, plan_item
from connector.settings import SyncSettings
from connector.taobao.client import TopClient

__all__ = ["ItemPusher", "LeaseLost"]

log = logging.getLogger(__name__)

_ZERO_FORBIDDEN: Final = "FORBIDDEN_QUANTITY_ZERO_ERROR"
_LEASE_LOST: ContextVar[asyncio.Event | None] = ContextVar("push_lease_lost", default=None)


class LeaseLost(Exception):
    """The item's lease was lost mid-push: no further write may be sent."""


def _fence() -> None:
    lost = _LEASE_LOST.get()
    if lost is not None and lost.is_set():
        raise LeaseLost


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
        self, num_iid: int, targets: dict[SkuKey, int], *, lease_lost: asyncio.Event
    ) -> tuple[ItemPlan, list[Transition]]:
        """Plan and make the item's calls; ``lease_lost`` fences every write."""
        token = _LEASE_LOST.set(lease_lost)  # per task: items are pushed concurrently
        try:
            return await self._execute(num_iid, targets)
        finally:
            _LEASE_LOST.reset(token)

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
                _fence()
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
            _fence()
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
        _fence()
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
                _fence()
                await self._client.update_quantity(num_iid, delta, sku_id=key, incremental=True)
        await self._items.clear_intent(num_iid)
        await self._items.save(num_iid, {f"q:{sku_field(k)}": t for k, t in targets.items()})

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
