"""Watching Taobao's item messages for changes the connector did not make (I/O).

Item messages are held a few seconds (``SETTLE_MS``) and judged when the bridge has caught
up with the message queue (the order that explains a deduction, announced with it, is then
in the trade cache), by ``connector.tmc.item_changes``. A stock change nobody explains (a
hand edit, another tool) on a listing the connector manages is reported and handed to the
projection: the listing's push base is dropped and its code made due, so the ledger's
figure is written over it (at most once per listing every ``HEAL_EVERY_S``: another tool
that keeps writing is reported, not fought). A delisting that was not the connector's and
not a sell-out is reported, and remembered so the item stays down.

Held changes live in this replica's memory: a change published before this replica took
the bridge over is not judged (the order that explains it may have been read by the
replica before), and a crash loses the ones held (reported by neither).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from redis.exceptions import RedisError

from connector.contracts.records import AlertKind, Severity, StockAlert
from connector.errors import DependencyError, TaobaoError
from connector.keys import Keys
from connector.ledger.ledger import Ledger
from connector.push.base_store import BaseStore
from connector.push.bases import listing_key
from connector.push.item_outcome import ITEM_GONE
from connector.push.items import ItemStates
from connector.redis_client import AsyncRedis
from connector.taobao.client import TopClient
from connector.taobao.models import Item
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

log = logging.getLogger(__name__)

SETTLE_MS: Final = 5_000
OWN_DELIST_MS: Final = 60_000
HEAL_EVERY_S: Final = 600
MAX_ATTEMPTS: Final = 3


@dataclass
class ItemWatch:
    client: TopClient
    items: ItemStates
    bases: BaseStore
    ledger: Ledger
    redis: AsyncRedis
    keys: Keys
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    held: dict[int, StockChange | Downshelf] = field(default_factory=dict)  # by message id
    _attempts: dict[int, int] = field(default_factory=dict)
    _since_ms: int = 0

    def lead(self) -> None:
        """This replica takes the bridge over: judge only what is published from now."""
        self.held.clear()
        self._attempts.clear()
        self._since_ms = self.clock_ms()

    def hold(self, messages: Iterable[TmcMessage]) -> None:
        for message in messages:
            try:
                change = parse_item_message(message)
            except (TypeError, ValueError):
                log.warning("item message %s has fields that do not parse: ignored", message.id)
                continue
            if change is not None and change.pub_ms >= self._since_ms:
                self.held[message.id] = change

    async def settle(self, cache: TradeCache) -> tuple[list[StockAlert], list[int]]:
        """Judge the held changes published ``SETTLE_MS`` ago or more (the bridge calls this
        once it has caught up). Returns the alerts and the message ids judged: the bridge
        drops them (``done``) once the alerts are out."""
        now = self.clock_ms()
        alerts: list[StockAlert] = []
        judged: list[int] = []
        writes: dict[int, list[Write]] = {}
        for message_id, change in list(self.held.items()):
            if now - change.pub_ms < SETTLE_MS:
                continue
            try:
                alert = await self._judge(change, cache, writes, now)
            except TaobaoError as exc:
                tries = self._attempts.get(message_id, 0) + 1
                self._attempts[message_id] = tries
                gone = (exc.sub_code or "").startswith(ITEM_GONE)
                if not gone and tries < MAX_ATTEMPTS:
                    continue  # judged again with the next round
                log.warning("item %s: change not judged (%s)", change.num_iid, exc)
                alert = None
            judged.append(message_id)
            if alert is not None:
                alerts.append(alert)
        return alerts, judged

    def done(self, message_ids: Iterable[int]) -> None:
        for message_id in message_ids:
            self.held.pop(message_id, None)
            self._attempts.pop(message_id, None)

    async def _judge(
        self,
        change: StockChange | Downshelf,
        cache: TradeCache,
        writes: dict[int, list[Write]],
        now: int,
    ) -> StockAlert | None:
        if isinstance(change, Downshelf):
            return await self._downshelf(change, now)
        if change.num_iid not in writes:
            recent = await self.items.writes(change.num_iid)
            writes[change.num_iid] = [Write(s, q, at) for s, q, at in recent]
        moves = trade_moves(cache.trades_of(change.num_iid), change.num_iid)
        if explained(change, writes[change.num_iid], moves):
            return None
        return await self._stock(change, now)

    async def _stock(self, change: StockChange, now: int) -> StockAlert | None:
        item = await self.client.get_item(change.num_iid)
        if change.sku_id is None and item.skus:
            return None  # the item's total: its SKUs' own messages say what changed
        code = _code(item, change.sku_id)
        if code is None or not await self._managed(code):
            return None  # not a listing of the connector's: not ours to judge
        listing = listing_key(change.num_iid, change.sku_id)
        healed = await self._heal(code, listing)
        sku = "" if change.sku_id is None else f" SKU {change.sku_id}"
        then = (
            "the ledger's figure is written over it"
            if healed
            else "already written over in the last 10 minutes: left as it is (is another "
            "tool writing this stock?)"
        )
        return StockAlert(
            alert_id=f"taobao_stock_changed:{change.num_iid}:{change.sku_id or ''}:{change.pub_ms}",
            kind=AlertKind.TAOBAO_STOCK_CHANGED,
            severity=Severity.WARNING,
            message=(
                f"item {change.num_iid}{sku} ({code}) changed on Taobao by "
                f"{change.increment:+d} to {change.quantity}, not by the connector nor by a "
                f"Taobao order (a hand edit or another tool): {then}"
            ),
            raised_at_ms=now,
            sku=code,
            num_iid=change.num_iid,
            details={"increment": str(change.increment), "quantity": str(change.quantity)},
        )

    async def _managed(self, code: str) -> bool:
        """A code the ledger holds stock for (writing over an unknown one would set 0)."""
        return (await self.ledger.stock([code]))[code].version > 0

    async def _heal(self, code: str, listing: str) -> bool:
        try:
            first = await self.redis.set(self.keys.tmc_healed(listing), 1, nx=True, ex=HEAL_EVERY_S)
        except RedisError as exc:
            raise DependencyError(f"Redis unreachable for the bridge's records: {exc}") from exc
        if not first:
            return False
        # Handed to the projection: written absolutely from the ledger's figure.
        await self.bases.forget([(code, listing)])
        await self.ledger.force_pending([code])
        return True

    async def _downshelf(self, change: Downshelf, now: int) -> StockAlert | None:
        state = await self.items.load(change.num_iid)
        ours_at = int(state.get("delisted_at_ms") or 0)
        if state.get("delisted_by_us") == "1" and abs(change.pub_ms - ours_at) <= OWN_DELIST_MS:
            return None
        if "on_sale" not in state:
            return None  # an item the connector has never pushed
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


def _code(item: Item, sku_id: int | None) -> str | None:
    if sku_id is None:
        return item.outer_id
    return next((s.outer_id for s in item.skus if s.sku_id == sku_id), None)
