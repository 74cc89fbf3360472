"""``taobao-connector produce``: send events to the input topics, for trials and tests.

``--sample`` sends the demo story (``connector.demo.scenario``); ``--file F`` sends JSON lines,
one event each, ``{"kind": "order", "event_id": …, "order_id": …, "channel": …, "shop": …,
"type": "created", "lines": [{"sku": …, "quantity": 1, "warehouse": …}], "occurred_at_ms": …}``
or ``{"kind": "warehouse", "event_id": …, "warehouse": …, "type": "received", "sku": …,
"quantity": 5, "occurred_at_ms": …}``. Each line is validated by the same rules as the
connector applies, so a bad line is reported with its number and nothing is sent.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from connector.contracts.codec import AvroCodec
from connector.contracts.events import OrderEvent, StockEvent
from connector.demo.scenario import demo_scenario
from connector.errors import ConfigError, InvalidEvent
from connector.ingest.validate import parse_order, parse_warehouse
from connector.kafka import EventProducer, Outbound
from connector.settings import KafkaSettings, SyncSettings

__all__ = ["produce_events", "read_events"]


def read_events(path: Path, sync: SyncSettings, *, now_ms: int) -> list[StockEvent]:
    """Parse and validate a JSON-lines file; the first bad line is a ``ConfigError``."""
    events: list[StockEvent] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"--file {path}: {exc.strerror}") from None
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            events.append(_parse(json.loads(text), sync, now_ms))
        except (json.JSONDecodeError, InvalidEvent, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"--file {path}, line {number}: {exc}") from None
    return events


def _parse(record: dict[str, Any], sync: SyncSettings, now_ms: int) -> StockEvent:
    kind = record.pop("kind")
    record["occurred_at"] = record.pop("occurred_at_ms", now_ms)
    record["type"] = str(record["type"]).upper()
    if kind == "order":
        record["channel"] = str(record.get("channel", "other")).upper()
        return parse_order(
            record, max_quantity=sync.max_quantity, max_lines=sync.max_lines, now_ms=now_ms
        )
    if kind == "warehouse":
        return parse_warehouse(record, max_quantity=sync.max_quantity, now_ms=now_ms)
    raise InvalidEvent("unknown_type", f"kind must be 'order' or 'warehouse', not {kind!r}")


def sample_events(now_ms: int) -> list[StockEvent | bytes]:
    return [e for step in demo_scenario(now_ms - 3_600_000) for e in step.events]


def produce_events(kafka: KafkaSettings, events: Iterable[StockEvent | bytes]) -> int:
    codec = AvroCodec.from_settings(kafka)
    messages = []
    for event in events:
        if isinstance(event, bytes):
            messages.append(Outbound(kafka.orders_topic, event, key=b"poison"))
        elif isinstance(event, OrderEvent):
            value = codec.encode_order(event, topic=kafka.orders_topic)
            messages.append(Outbound(kafka.orders_topic, value, key=event.order_id.encode()))
        else:
            value = codec.encode_warehouse(event, topic=kafka.warehouse_topic)
            messages.append(Outbound(kafka.warehouse_topic, value, key=event.sku.encode()))
    producer = EventProducer(kafka)
    try:
        producer.send(messages, timeout_s=30)
    finally:
        producer.close()
    print(f"sent {len(messages)} events", file=sys.stderr)
    return 0


def now_ms() -> int:
    return int(time.time() * 1000)
