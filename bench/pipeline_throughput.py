"""End-to-end figures of the sync job: events/s, Taobao calls per event, latency, memory.

Everything real and local: the embedded broker and Redis-compatible server, the sandbox
gateway in its own process, and the connector as its own process (``taobao-connector
run``), so its memory is measured alone. Two phases:

1. backlog: ``--events`` events are produced first, then the connector drains them; the
   figure is input events per second from first to last result;
2. steady rate: ``--rate`` events/s for ``--seconds``; latency is the time from an input's
   broker timestamp to its result's broker timestamp (p50/p95/p99).

Taobao calls per event is the sandbox's call count over the events processed: coalescing
many events on one SKU into one update is what keeps it far below 1.

``BENCH_PROFILE="-m cProfile -o /tmp/connector.prof"`` runs the connector under a profiler.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from connector.contracts.codec import AvroCodec
from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    WarehouseEvent,
    WarehouseType,
)
from connector.demo.embedded import EmbeddedBroker, EmbeddedRedis
from connector.kafka import EventProducer, Outbound, ensure_topics
from connector.settings import KafkaSettings

CODES = [
    "TSHIRT-RED-M", "TSHIRT-RED-L", "TSHIRT-BLUE-M", "SNEAKER-42", "SNEAKER-43",
    "MUG-WHITE", "JACKET-BLACK-M", "JACKET-BLACK-L",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="backlog size")
    parser.add_argument("--rate", type=int, default=500, help="steady-phase events/s")
    parser.add_argument("--seconds", type=float, default=10, help="steady-phase length")
    parser.add_argument("--batch", type=int, default=500, help="KAFKA_BATCH_MAX_EVENTS")
    args = parser.parse_args()
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        sandbox, gateway = _start_sandbox(Path(tmp))
        try:
            _run(args, broker.bootstrap_servers, redis.url, gateway)
        finally:
            sandbox.terminate()
            sandbox.wait(10)


def _start_sandbox(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    log = tmp / "sandbox.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.sandbox", "--port", "0"],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = re.search(r"(http://[\d.]+:\d+)/router/rest", log.read_text())
        if found:
            return proc, found.group(1)
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"sandbox did not start: {log.read_text()}")


def _kafka(bootstrap: str, run: str, batch: int) -> KafkaSettings:
    return KafkaSettings.model_validate(
        {
            "bootstrap_servers": bootstrap,
            "group_id": f"bench-{run}",
            "orders_topic": f"bench-orders-{run}",
            "warehouse_topic": f"bench-warehouse-{run}",
            "results_topic": f"bench-results-{run}",
            "alerts_topic": f"bench-alerts-{run}",
            "dead_letter_topic": f"bench-dlq-{run}",
            "session_timeout_ms": 6000,
            "batch_max_events": batch,
            "batch_wait_ms": 20,
        }
    )


def _env(kafka: KafkaSettings, redis_url: str, gateway: str, run: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAOBAO_", "REDIS_", "KAFKA_"))}
    env.update(
        {
            "TAOBAO_APP_KEY": "sandbox-app-key",
            "TAOBAO_APP_SECRET": "sandbox-app-secret",
            "TAOBAO_SESSION": "sandbox-session",
            "TAOBAO_REFRESH_TOKEN": "sandbox-refresh-token",
            "TAOBAO_GATEWAY_URL": f"{gateway}/router/rest",
            "TAOBAO_TOKEN_URL": f"{gateway}/token",
            "TAOBAO_QPS": "200",
            "TAOBAO_BURST": "20",
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": f"bench-{run}",
            "OTEL_TRACES_EXPORTER": "none",
            **{
                f"KAFKA_{k.upper()}": str(v)
                for k, v in kafka.model_dump(exclude_none=True).items()
                if not isinstance(v, dict)
            },
        }
    )
    return env


def _events(
    n: int, rng: random.Random, start_ms: int, first: int
) -> list[OrderEvent | WarehouseEvent]:
    events: list[OrderEvent | WarehouseEvent] = []
    for i in range(first, first + n):
        code = rng.choice(CODES)
        at = start_ms + i
        if i % 10 == 0:
            events.append(WarehouseEvent(f"wh-{i}", "WH-1", WarehouseType.RECEIVED, code, 50, at))
        else:
            kind = OrderType.CANCELLED if i % 7 == 0 else OrderType.CREATED
            oid = f"o-{i - 1 if kind is OrderType.CANCELLED else i}"
            events.append(
                OrderEvent(
                    f"e-{i}", oid, "taobao", "bench", kind, (OrderLine(code, 1, "WH-1"),), at
                )
            )
    return events


def _outbound(codec: AvroCodec, kafka: KafkaSettings, e: OrderEvent | WarehouseEvent) -> Outbound:
    if isinstance(e, OrderEvent):
        return Outbound(
            kafka.orders_topic, codec.encode_order(e, topic=kafka.orders_topic), e.order_id.encode()
        )
    return Outbound(
        kafka.warehouse_topic,
        codec.encode_warehouse(e, topic=kafka.warehouse_topic),
        e.sku.encode(),
    )


def _run(args: argparse.Namespace, bootstrap: str, redis_url: str, gateway: str) -> None:
    run = uuid.uuid4().hex[:8]
    kafka = _kafka(bootstrap, run, args.batch)
    ensure_topics(kafka, [kafka.orders_topic, kafka.warehouse_topic], partitions=3)
    ensure_topics(
        kafka,
        [kafka.results_topic, kafka.alerts_topic, kafka.dead_letter_topic, kafka.pushes_topic],
        partitions=1,
    )
    codec, rng = AvroCodec(), random.Random(7)
    producer = EventProducer(kafka)
    start_ms = int(time.time() * 1000) - 3_600_000
    backlog = _events(args.events, rng, start_ms, 0)
    producer.send([_outbound(codec, kafka, e) for e in backlog], timeout_s=120)
    print(f"produced a backlog of {len(backlog)} events over {len(CODES)} SKUs", flush=True)

    connector = subprocess.Popen(
        [
            sys.executable,
            *os.environ.get("BENCH_PROFILE", "").split(),
            "-m",
            "connector",
            "--log-level",
            "WARNING",
            "run",
        ],
        env=_env(kafka, redis_url, gateway, run),
    )
    reader = _reader(bootstrap, kafka.results_topic)
    try:
        first, last, seen = _drain(reader, len(backlog), timeout_s=300)
        rate = (len(backlog) - 1) / max(last - first, 1e-9)
        calls_backlog = _api_calls(gateway)
        print(f"backlog: {len(backlog)} events in {last - first:.2f} s → {rate:,.0f} events/s")
        print(
            f"Taobao calls per event (backlog): {calls_backlog / len(backlog):.4f} "
            f"({calls_backlog} calls)"
        )
        latencies = _steady(args, codec, kafka, producer, reader, rng, start_ms, seen)
        calls_total = _api_calls(gateway)
        steady_events = int(args.rate * args.seconds)
        print(
            f"steady {args.rate} events/s for {args.seconds:.0f} s: latency "
            f"p50 {_pct(latencies, 50):.1f} ms, p95 {_pct(latencies, 95):.1f} ms, "
            f"p99 {_pct(latencies, 99):.1f} ms (n={len(latencies)})"
        )
        print(
            f"Taobao calls per event (steady): {(calls_total - calls_backlog) / steady_events:.4f}"
        )
        print(f"connector peak RSS: {_peak_rss_mib(connector.pid):.0f} MiB")
    finally:
        connector.terminate()
        connector.wait(30)
        reader.close()
        producer.close()


def _reader(bootstrap: str, topic: str) -> Any:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    return consumer


def _drain(reader: Any, n: int, *, timeout_s: float) -> tuple[float, float, int]:
    seen, first, last = 0, 0.0, 0.0
    deadline = time.monotonic() + timeout_s
    while seen < n and time.monotonic() < deadline:
        for m in reader.consume(1000, 0.5):
            if m.error() is None:
                stamp = m.timestamp()[1] / 1000
                first = first or stamp
                last = stamp
                seen += 1
    if seen < n:
        raise SystemExit(f"only {seen}/{n} results after {timeout_s}s")
    return first, last, seen


def _steady(
    args: argparse.Namespace,
    codec: AvroCodec,
    kafka: KafkaSettings,
    producer: EventProducer,
    reader: Any,
    rng: random.Random,
    start_ms: int,
    offset: int,
) -> list[float]:
    total = int(args.rate * args.seconds)
    events = _events(total, rng, start_ms + 10_000_000, args.events)
    sent_at: dict[str, float] = {}
    tick = 0.05
    per_tick = max(1, int(args.rate * tick))
    began = time.monotonic()
    for i in range(0, total, per_tick):
        chunk = events[i : i + per_tick]
        producer.send([_outbound(codec, kafka, e) for e in chunk], timeout_s=30)
        now = time.time()
        for e in chunk:
            sent_at[e.event_id] = now
        time.sleep(max(0.0, began + (i // per_tick + 1) * tick - time.monotonic()))
    latencies: list[float] = []
    deadline = time.monotonic() + 120
    while len(latencies) < total and time.monotonic() < deadline:
        for m in reader.consume(1000, 0.5):
            if m.error() is None and m.key() and m.key().decode() in sent_at:
                latencies.append((m.timestamp()[1] / 1000 - sent_at[m.key().decode()]) * 1000)
    return sorted(latencies)


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")


def _api_calls(gateway: str) -> int:
    calls = httpx.get(f"{gateway}/sandbox/calls", params={"limit": 1_000_000}, timeout=30).json()[
        "calls"
    ]
    return sum(1 for c in calls if c["method"].startswith("taobao."))


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    main()
