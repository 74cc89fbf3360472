"""The TMC messages an item change publishes, whoever made it (a TOP call, a hand edit):
``taobao_item_ItemStockChanged`` per stock that moved (with ``increment``),
``taobao_item_ItemUpshelf`` / ``ItemDownshelf`` when the shelf state changed (reference §5.3).

Pure: a snapshot before the change, the item after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from connector.sandbox.model import ApproveStatus, Item

__all__ = ["SELLER_NICK", "Published", "Snapshot", "changes"]

SELLER_NICK: Final = "sandbox_b_01"
Published = tuple[str, dict[str, Any]]  # (TMC topic, content)


@dataclass(frozen=True)
class Snapshot:
    num: int
    skus: dict[int, int]
    approve_status: ApproveStatus

    @classmethod
    def of(cls, item: Item) -> Snapshot:
        return cls(item.num, {s.sku_id: s.quantity for s in item.skus}, item.approve_status)


def changes(before: Snapshot, item: Item) -> list[Published]:
    published: list[Published] = []
    if item.skus:
        for sku in item.skus:
            increment = sku.quantity - before.skus.get(sku.sku_id, sku.quantity)
            if increment:
                published.append(_stock(item, increment, sku_id=sku.sku_id, sku_num=sku.quantity))
    elif item.num != before.num:
        published.append(_stock(item, item.num - before.num))
    if item.approve_status == "onsale" and before.approve_status != "onsale":
        published.append(
            ("taobao_item_ItemUpshelf", {"num_iid": item.num_iid, "nick": SELLER_NICK})
        )
    elif item.approve_status != "onsale" and before.approve_status == "onsale":
        # §5.3: ItemDownshelf sends num_iid only (nick and the rest are marked 不发送).
        published.append(("taobao_item_ItemDownshelf", {"num_iid": item.num_iid}))
    return published


def _stock(item: Item, increment: int, **sku: Any) -> Published:
    content: dict[str, Any] = {
        "num_iid": item.num_iid,
        "nick": SELLER_NICK,
        "num": item.num,
        "increment": increment,
        "changed_fields": "num",
        **sku,
    }
    return "taobao_item_ItemStockChanged", content
