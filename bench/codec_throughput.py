"""Avro codec throughput: encode and decode events/s for order and warehouse events.

Runs each measurement for about ``--seconds`` (default 1) on one core, without and with
Confluent framing (an in-memory mock registry, so only the codec is measured), and also
decode + validate, which is what the consumer does per record.

    .venv/bin/python bench/codec_throughput.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

from connector.contracts.codec import AvroCodec
from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    WarehouseEvent,
    WarehouseType,
)
from connector.ingest.validate import parse_order, parse_warehouse

NOW_MS = 1_714_521_600_000

ORDER = OrderEvent(
    event_id="3f0c9a52-6a3e-4d5b-9b1e-6c1f0d2a7e41",
    order_id="TB-20240501-000123456",
    channel="taobao",
    shop="flagship-store",
    type=OrderType.CREATED,
    lines=tuple(OrderLine(f"SKU-{i:05d}", i + 1, "HZ-01") for i in range(3)),
    occurred_at_ms=NOW_MS,
)
WAREHOUSE = WarehouseEvent(
    event_id="8c2d4e1a-0b7f-4f0e-a1d3-5e9b7c6a2f10",
    warehouse="HZ-01",
    type=WarehouseType.RECEIVED,
    sku="SKU-00042",
    quantity=120,
    occurred_at_ms=NOW_MS,
)


def rate(action: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``action``, timed in batches so the clock is read rarely."""
    batch, done = 1_000, 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            action()
        done += batch
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


def registry_codec() -> AvroCodec | None:
    with warnings.catch_warnings(record=True):  # authlib's import-time httpx warning
        try:
            from confluent_kafka.schema_registry import SchemaRegistryClient
        except ImportError:
            return None
    url = f"mock://bench-{uuid.uuid4().hex}"
    return AvroCodec(SchemaRegistryClient.new_client({"url": url}))


def measure(name: str, codec: AvroCodec, seconds: float) -> None:
    order = codec.encode_order(ORDER, topic="orders")
    move = codec.encode_warehouse(WAREHOUSE, topic="warehouse")
    rows = [
        ("order encode", lambda: codec.encode_order(ORDER, topic="orders")),
        ("order decode", lambda: codec.decode_order(order)),
        (
            "order decode+validate",
            lambda: parse_order(
                codec.decode_order(order), max_quantity=100_000, max_lines=500, now_ms=NOW_MS
            ),
        ),
        ("warehouse encode", lambda: codec.encode_warehouse(WAREHOUSE, topic="warehouse")),
        ("warehouse decode", lambda: codec.decode_warehouse(move)),
        (
            "warehouse decode+validate",
            lambda: parse_warehouse(
                codec.decode_warehouse(move), max_quantity=100_000, now_ms=NOW_MS
            ),
        ),
    ]
    print(f"{name}  (order {len(order)} bytes, 3 lines; warehouse {len(move)} bytes)")
    for label, action in rows:
        print(f"  {label:<28}{rate(action, seconds):>12,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    measure("plain Avro (no registry)", AvroCodec(), args.seconds)
    framed = registry_codec()
    if framed is None:
        print("Confluent framing: skipped (confluent_kafka.schema_registry not importable)")
    else:
        measure("Confluent framing (mock registry)", framed, args.seconds)


if __name__ == "__main__":
    main()
