"""Watching Taobao's item messages for changes the connector did not make (I/O).

Item messages are held a few seconds (``SETTLE_MS``) and judged when the bridge has caught
up with the message queue (the order that explains a deduction, announced with it, is then
in the trade cache), by ``connector.tmc.item_changes``. A stock change nobody explains (a hand edit,
another tool) is reported and handed to the projection: the listing's push base is dropped
and its code made due, so the ledger's figure is written over it. A delisting that was not
the connector's and not a sell-out is reported, and remembered so the item stays down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from connector.contracts.records import AlertKind, Severity, StockAlert
from connector.ledger.ledger import Ledger
from connector.push.base_store import BaseStore
from connector.push.bases import listing_key
from connector.push.items import ItemStates
from connector.taobao.client import TopClient
from connector.tmc.fetch import TradeCache
from connector.tmc.item_changes import (
    Downshelf,
    StockChange,
    Write,
    explained,
    parse_item_message,
    trade_moves,
)
from connector.tmc.trades import TmcMessage

__all__ = ["ItemWatch"]

SETTLE_MS: Final = 5_000
OWN_DELIST_MS: Final = 60_000


@dataclass
class ItemWatch:
    client: TopClient
    items: ItemStates
    bases: BaseStore
    ledger: Ledger
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    held: list[StockChange | Downshelf] = field(default_factory=list)

    def hold(self, messages: Iterable[TmcMessage]) -> None:
        for message in messages:
            change = parse_item_message(message)
            if change is not None:
                self.held.append(change)

    async def settle(self, cache: TradeCache) -> list[StockAlert]:
        """Judge the held changes published ``SETTLE_MS`` ago or more (the bridge calls this
        when it has caught up, so the orders published with them have been read); the
        alerts they raise."""
        now = self.clock_ms()
        due = [c for c in self.held if now - c.pub_ms >= SETTLE_MS]
        if not due:
            return []
        alerts: list[StockAlert] = []
        for change in due:
            if isinstance(change, StockChange):
                alert = await self._stock(change, cache, now)
            else:
                alert = await self._downshelf(change, now)
            if alert is not None:
                alerts.append(alert)
        # (Judged once: a failure above leaves them all held, and judged again.)
        self.held = [c for c in self.held if c not in due]
        return alerts

    async def _stock(self, change: StockChange, cache: TradeCache, now: int) -> StockAlert | None:
        writes = [Write(s, q, at) for s, q, at in await self.items.writes(change.num_iid)]
        moves = trade_moves(cache.trades_of(change.num_iid), change.num_iid)
        if explained(change, writes, moves):
            return None
        item = await self.client.get_item(change.num_iid)
        code = (
            item.outer_id
            if change.sku_id is None
            else next((s.outer_id for s in item.skus if s.sku_id == change.sku_id), None)
        )
        sku = "" if change.sku_id is None else f" SKU {change.sku_id}"
        if code:
            # Handed to the projection: written absolutely from the ledger's figure.
            await self.bases.forget([(code, listing_key(change.num_iid, change.sku_id))])
            await self.ledger.force_pending([code])
        return StockAlert(
            alert_id=f"taobao_stock_changed:{change.num_iid}:{change.sku_id or ''}:{change.pub_ms}",
            kind=AlertKind.TAOBAO_STOCK_CHANGED,
            severity=Severity.WARNING,
            message=(
                f"item {change.num_iid}{sku} ({code or 'no merchant code'}) changed on Taobao "
                f"by {change.increment:+d} to {change.quantity}, not by the connector nor by a "
                "Taobao order (a hand edit or another tool): "
                + ("the ledger's figure is written over it" if code else "left as it is")
            ),
            raised_at_ms=now,
            sku=code,
            num_iid=change.num_iid,
            details={"increment": str(change.increment), "quantity": str(change.quantity)},
        )

    async def _downshelf(self, change: Downshelf, now: int) -> StockAlert | None:
        state = await self.items.load(change.num_iid)
        ours_at = int(state.get("delisted_at_ms") or 0)
        if state.get("delisted_by_us") == "1" and abs(change.pub_ms - ours_at) <= OWN_DELIST_MS:
            return None
        item = await self.client.get_item(change.num_iid)
        total = sum(s.quantity or 0 for s in item.skus) if item.skus else (item.num or 0)
        if item.on_sale or total == 0:
            return None  # back on sale already, or Taobao took it down at a sell-out
        fields: dict[str, str | int] = {"on_sale": 0, "delisted_by_us": 0}
        if item.delist_time is not None:
            fields["tb_delist_ms"] = int(item.delist_time.timestamp() * 1000)
        await self.items.save(change.num_iid, fields)  # so it is never relisted
        return StockAlert(
            alert_id=f"{change.num_iid}:hand_delisted:tmc:{change.pub_ms}",
            kind=AlertKind.HAND_DELISTED,
            severity=Severity.INFO,
            message=(
                f"item {change.num_iid} ({item.outer_id or 'no merchant code'}) was taken off "
                f"sale on Taobao with {total} in stock, not by the connector: it stays down"
            ),
            raised_at_ms=now,
            num_iid=change.num_iid,
        )
