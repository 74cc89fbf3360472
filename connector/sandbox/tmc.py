"""The sandbox's message service (TMC, reference §5): what the shop publishes, per consumer
group, served by ``taobao.tmc.messages.consume`` / ``confirm``.

Pure, clock passed in. Messages are published for the seller once ``taobao.tmc.user.permit``
allowed them (for the topics it named, or every topic), into the seller's group
(``default``). Delivery is at least once: a consumed message that is not confirmed within
``visibility_s`` is served again (the platform's redelivery schedule is UNCONFIRMED; the
sandbox's is this timeout). Message ids are above 2^53, as the platform's can be.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from connector.taobao.protocol import format_timestamp

__all__ = ["TOPICS", "Message", "MessageService"]

# The topics the sandbox publishes (reference §5.3).
TOPICS: Final = (
    "taobao_trade_TradeCreate",
    "taobao_trade_TradeBuyerPay",
    "taobao_trade_TradeClose",
    "taobao_trade_TradeSellerShip",
    "taobao_trade_TradeSuccess",
    "taobao_refund_RefundSuccess",
    "taobao_item_ItemStockChanged",
    "taobao_item_ItemUpshelf",
    "taobao_item_ItemDownshelf",
    "taobao_item_ItemUpdate",
)
FIRST_ID: Final = (1 << 53) + 5_000_000_011


@dataclass(frozen=True)
class Message:
    id: int
    topic: str
    content: str  # a JSON string, as TOP sends it
    pub_time: datetime

    def to_json(self, app_key: str, user_id: int, user_nick: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "content": self.content,
            "pub_time": format_timestamp(self.pub_time),
            "pub_app_key": app_key,
            "user_id": user_id,
            "user_nick": user_nick,
        }


@dataclass
class MessageService:
    """One app's messages for the sandbox's one seller, queued for the seller's group."""

    visibility_s: float = 30.0
    group_name: str = "default"  # the seller's group (taobao.tmc.user.get)
    permitted: frozenset[str] | None = None  # None: not permitted; empty: every topic
    permitted_at: datetime | None = None
    messages: dict[int, Message] = field(default_factory=dict)
    # Not yet confirmed, in publication order: id -> when it may be served again (None:
    # never served yet).
    _waiting: OrderedDict[int, float | None] = field(default_factory=OrderedDict)
    _next: int = FIRST_ID

    def permit(self, topics: Iterable[str] | None, *, now: datetime) -> None:
        """``taobao.tmc.user.permit``: the topics named replace the seller's list; none
        named means every topic of the app."""
        self.permitted = frozenset(topics or ())
        self.permitted_at = now

    def topics(self) -> list[str]:
        if self.permitted is None:
            return []
        return sorted(self.permitted or TOPICS)

    def publish(self, topic: str, content: Mapping[str, Any], *, now: datetime) -> None:
        if self.permitted is None or (self.permitted and topic not in self.permitted):
            return
        message = Message(self._next, topic, json.dumps(dict(content), ensure_ascii=False), now)
        self._next += 1
        self.messages[message.id] = message
        self._waiting[message.id] = None

    def consume(self, group_name: str, quantity: int, *, clock: float) -> list[Message]:
        """Up to ``quantity`` messages due, oldest first (none for a group the seller is
        not in); each is hidden for ``visibility_s`` unless confirmed."""
        if group_name != self.group_name:
            return []
        out: list[Message] = []
        for message_id, due in self._waiting.items():
            if len(out) >= quantity:
                break
            if due is None or due <= clock:
                out.append(self.messages[message_id])
        for message in out:
            self._waiting[message.id] = clock + self.visibility_s
        return out

    def confirm(self, ids: Iterable[int]) -> int:
        """Confirmed ids are never served again; unknown or repeated ids are ignored."""
        confirmed = 0
        for message_id in ids:
            if message_id in self._waiting:
                del self._waiting[message_id]
                confirmed += 1
        return confirmed

    def pending(self) -> int:
        return len(self._waiting)
