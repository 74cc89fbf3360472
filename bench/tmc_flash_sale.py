"""A flash sale on Taobao itself: calls per Taobao order, order-to-ledger time, and how far
Taobao's quantity strays from the truth while the connector keeps up.

Real parts: the embedded broker (Tansu) and Redis (Valkey), the sandbox gateway, and the
connector (``Connector``, in this process) with the message-service bridge on
(``TAOBAO_TMC_ENABLED``) at its default polling and ``--qps`` calls per second. The shop
has one item with ``--skus`` SKUs (stock deducted on order, ``sub_stock`` 1) and the ledger
starts from the same counts. ``--orders`` buyers' orders of one unit each are placed on
Taobao (``POST /sandbox/orders``) at ``--rate`` per second from a few threads. Printed:

- TOP calls per Taobao order: the bridge's (consume, confirm, trade reads) and the
  projection's (its stock updates);
- order to ledger: from an order's placement to its ``created`` event's result
  (p50/p99/max);
- the worst gap between Taobao's quantity and the truth (stock less every order placed),
  sampled every 100 ms during the sale and until it converges: positive = Taobao showed
  stock already sold (an oversell window), negative = it showed less (orders answered
  while the sample was read count as not yet placed);
- the time from the last order until Taobao and the ledger agree with the truth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from connector.contracts.codec import AvroCodec
from connector.contracts.events import WarehouseEvent, WarehouseType
from connector.demo.embedded import EmbeddedBroker, EmbeddedRedis
from connector.kafka import EventProducer, Outbound, ensure_topics
from connector.sandbox.server import SandboxConfig, SandboxServer
from connector.service.app import Connector
from connector.settings import KafkaSettings, Settings

NUM_IID = 610000000001
FIRST_SKU = 710000000001
BRIDGE = ("taobao.tmc.", "taobao.trade")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--skus", type=int, default=10)
    parser.add_argument("--rate", type=float, default=500, help="orders placed per second")
    parser.add_argument("--qps", type=float, default=10, help="TAOBAO_QPS")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="start selling before the first pushes land (as when the bridge is turned on "
        "in the middle of a sale): their absolute writes erase what the bridge has not "
        "brought in yet, and orders in their second are counted twice until re-anchoring",
    )
    args = parser.parse_args()
    stock = args.orders // args.skus + 100  # no SKU sells out
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        catalog = Path(tmp) / "catalog.json"
        catalog.write_text(json.dumps(_catalog(args.skus, stock)))
        with SandboxServer(SandboxConfig(catalog_path=catalog, seed=7)) as sandbox:
            figures = asyncio.run(_run(args, stock, broker.bootstrap_servers, redis.url, sandbox))
    _print(args, figures)


def _catalog(skus: int, stock: int) -> dict[str, Any]:
    return {
        "items": [
            {
                "num_iid": NUM_IID,
                "title": "Flash-sale item",
                "outer_id": "FLASH",
                "price": "9.90",
                "sub_stock": 1,
                "skus": [
                    {"sku_id": FIRST_SKU + i, "outer_id": f"FLASH-{i}", "quantity": stock,
                     "properties": f"1:{i}", "price": "9.90"}
                    for i in range(skus)
                ],
            }
        ]
    }  # fmt: skip


def _settings(bootstrap: str, redis_url: str, sandbox: SandboxServer, qps: float) -> Settings:
    run = uuid.uuid4().hex[:8]
    names = ("orders", "warehouse", "results", "alerts", "dead_letter", "pushes")
    kafka = KafkaSettings.model_validate(
        {
            "bootstrap_servers": bootstrap,
            "group_id": f"tmc-bench-{run}",
            "session_timeout_ms": 6000,
            "batch_wait_ms": 50,
            **{f"{name}_topic": f"tmc-{name}-{run}" for name in names},
        }
    )
    ensure_topics(kafka, [kafka.orders_topic, kafka.warehouse_topic], partitions=3)
    outputs = [kafka.results_topic, kafka.alerts_topic, kafka.dead_letter_topic, kafka.pushes_topic]
    ensure_topics(kafka, outputs, partitions=1)
    config = sandbox.config
    return Settings.model_validate(
        {
            "taobao": {
                "app_key": config.app_key,
                "app_secret": config.app_secret,
                "session": config.session,
                "refresh_token": config.refresh_token,
                "gateway_url": sandbox.gateway_url,
                "token_url": sandbox.token_url,
                "qps": qps,
                "burst": max(1, int(qps)),
                "tmc_enabled": True,
            },
            "redis": {"url": redis_url, "key_prefix": f"tmc-bench-{run}"},
            "kafka": kafka,
        }
    )


async def _run(
    args: argparse.Namespace, stock: int, bootstrap: str, redis_url: str, sandbox: SandboxServer
) -> dict[str, Any]:
    settings = _settings(bootstrap, redis_url, sandbox, args.qps)
    codes = [f"FLASH-{i}" for i in range(args.skus)]
    _produce_opening(settings.kafka, codes, stock)
    connector = await Connector.start(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(connector.run(stop))
    try:
        with httpx.Client(base_url=sandbox.url, timeout=10) as http:
            await _until(lambda: _tmc(http)["topics"], "the bridge's permit", 60)
            await _until(lambda: _ledger_has(connector, codes, stock), "the opening counts", 60)
            if not args.cold:
                # The first push of each listing is absolute (it starts the listing's base):
                # let it land, and its second pass, before Taobao starts selling.
                await _until(lambda: _based(connector, codes), "the first pushes", 60)
                await asyncio.sleep(1.1)
            before = await asyncio.to_thread(_calls, http)
            sale = _Sale(http, args.skus, stock)
            sampler = threading.Thread(target=sale.sample_until_done, daemon=True)
            sampler.start()
            started = time.monotonic()
            await asyncio.to_thread(sale.place, args.orders, args.rate)
            placed_s = time.monotonic() - started
            converged_s = await _converge(connector, sale, codes)
            sale.done.set()
            sampler.join(5)
            calls = await asyncio.to_thread(_calls, http)
            calls.subtract(before)
        applied = await asyncio.to_thread(_applied_at, settings.kafka, args.orders)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        await connector.aclose()
    latencies = [applied[k] - t for k, t in sale.placed.items() if k in applied]
    return {"placed_s": placed_s, "converged_s": converged_s, "calls": calls,
            "latencies": latencies, "gaps": sale.gaps, "orders": len(sale.placed)}  # fmt: skip


class _Sale:
    """Places the orders and samples Taobao's quantities against the truth."""

    def __init__(self, http: httpx.Client, skus: int, stock: int) -> None:
        self.http = http
        self.skus = skus
        self.stock = stock
        self.placed: dict[str, float] = {}  # "<tid>:<oid>" -> when the order was answered
        self.sold: Counter[int] = Counter()  # sku index -> orders answered
        self.gaps: list[int] = []  # per sample: the largest (shown - truth) over the SKUs
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._local = threading.local()

    def place(self, n: int, rate: float) -> None:
        start = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            for i in range(n):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(self._order, i % self.skus)

    def _order(self, sku: int) -> None:
        http = getattr(self._local, "http", None)
        if http is None:  # one keep-alive client per placing thread
            http = self._local.http = httpx.Client(base_url=str(self.http.base_url), timeout=10)
        answer = http.post(
            "/sandbox/orders", json={"num_iid": NUM_IID, "sku_id": FIRST_SKU + sku, "quantity": 1}
        )
        answer.raise_for_status()
        body = answer.json()
        with self._lock:
            self.placed[f"{body['tid']}:{body['oid']}"] = time.time()
            self.sold[sku] += 1

    def sample_until_done(self) -> None:
        with httpx.Client(base_url=str(self.http.base_url), timeout=10) as http:
            while not self.done.is_set():
                with self._lock:
                    sold = Counter(self.sold)  # answered before the read: surely deducted
                shown = self.shown(http)
                self.gaps.append(max(shown[i] - (self.stock - sold[i]) for i in range(self.skus)))
                time.sleep(0.1)

    def shown(self, http: httpx.Client | None = None) -> dict[int, int]:
        state = (http or self.http).get("/sandbox/state").json()
        item = next(i for i in state["items"] if i["num_iid"] == NUM_IID)
        return {s["sku_id"] - FIRST_SKU: s["quantity"] for s in item["skus"]}


async def _converge(connector: Connector, sale: _Sale, codes: list[str]) -> float:
    """Seconds from the last order until the ledger and Taobao both show the truth."""
    last = time.monotonic()

    async def agreed() -> bool:
        truth = {i: sale.stock - sale.sold[i] for i in range(sale.skus)}
        ledger = await connector.ledger.stock(codes)
        in_ledger = all(ledger[f"FLASH-{i}"].available == truth[i] for i in truth)
        return in_ledger and sale.shown() == truth

    await _until(agreed, "the ledger and Taobao to agree with the truth", 600)
    return time.monotonic() - last


def _produce_opening(kafka: KafkaSettings, codes: list[str], stock: int) -> None:
    codec = AvroCodec()
    now = int(time.time() * 1000) - 60_000
    producer = EventProducer(kafka)
    try:
        producer.send(
            [
                Outbound(
                    kafka.warehouse_topic,
                    codec.encode_warehouse(
                        WarehouseEvent(
                            f"open-{c}", "DEFAULT", WarehouseType.STOCKTAKE, c, stock, now
                        ),
                        topic=kafka.warehouse_topic,
                    ),
                    c.encode(),
                )
                for c in codes
            ],
            timeout_s=30,
        )
    finally:
        producer.close()


async def _ledger_has(connector: Connector, codes: list[str], stock: int) -> bool:
    try:
        found = await connector.ledger.stock(codes)
    except Exception:  # the ledger's marker is written once the consumer is assigned
        return False
    return all(found[c].available == stock for c in codes)


async def _based(connector: Connector, codes: list[str]) -> bool:
    found = await connector.ledger.stock(codes)
    return all(found[c].bases for c in codes)


def _tmc(http: httpx.Client) -> dict[str, Any]:
    found: dict[str, Any] = http.get("/sandbox/state").json()["tmc"]
    return found


async def _until(predicate: Any, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def _calls(http: httpx.Client) -> Counter[str]:
    """Every call the gateway answered so far, by method."""
    methods: Counter[str] = Counter()
    since = 0
    while True:
        page = http.get("/sandbox/calls", params={"since": since, "limit": 10_000}).json()
        methods.update(c["method"] for c in page["calls"])
        if not page["calls"]:
            return methods
        since = page["next"]


def _applied_at(kafka: KafkaSettings, orders: int) -> dict[str, float]:
    """order id -> when the ledger applied its ``created`` event (its result's timestamp)."""
    codec = AvroCodec()
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.bootstrap_servers,
            "group.id": "unused",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(kafka.results_topic, 0, 0)])
    found: dict[str, float] = {}
    deadline = time.monotonic() + 60
    try:
        while len(found) < orders and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is not None:
                    continue
                result = codec.decode_result(message.value() or b"")
                if result.event_id.startswith("taobao:") and result.event_id.endswith(":created"):
                    order_id = result.event_id.removeprefix("taobao:").rsplit(":", 1)[0]
                    found[order_id] = result.processed_at_ms / 1000
    finally:
        consumer.close()
    return found


def _print(args: argparse.Namespace, figures: dict[str, Any]) -> None:
    orders = figures["orders"]
    calls: Counter[str] = figures["calls"]
    bridge = sum(n for m, n in calls.items() if m.startswith(BRIDGE))
    projection = sum(n for m, n in calls.items() if not m.startswith(BRIDGE))
    lat = sorted(figures["latencies"])
    gaps = figures["gaps"] or [0]
    took = f"{figures['placed_s']:.1f} s (asked {args.rate:g}/s)"
    print(f"flash sale on Taobao: {orders} orders of 1 on {args.skus} SKUs in {took}, "
          f"TAOBAO_QPS={args.qps:g}")  # fmt: skip
    print(f"  TOP calls per Taobao order: bridge {bridge / orders:.4f} ({bridge} calls), "
          f"projection {projection / orders:.4f} ({projection} calls)")  # fmt: skip
    print("  calls by method: " + ", ".join(f"{m} {n}" for m, n in sorted(calls.items()) if n))
    if lat:
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(f"  order to ledger: p50 {p50:.2f} s, p99 {p99:.2f} s, max {lat[-1]:.2f} s "
              f"({len(lat)} of {orders} matched)")  # fmt: skip
    print(f"  Taobao minus truth over {len(gaps)} samples: worst +{max(max(gaps), 0)} "
          f"(overstated), lowest {min(gaps)}; samples overstated: "
          f"{sum(1 for g in gaps if g > 0)}")  # fmt: skip
    print(f"  converged {figures['converged_s']:.1f} s after the last order")


if __name__ == "__main__":
    main()
