"""The connector against the ceiling of its parts, as ratios measured in the same run.

One invocation starts the embedded broker (Tansu), the embedded Redis-compatible server
(Valkey) and the sandbox gateway, then runs ``--pairs`` interleaved pairs (the order of the
measurements alternates from one pair to the next) of:

(a) the ceiling: a minimal Python loop on the same parts. confluent-kafka ``Consumer`` in
    assign mode, ``consume(--batch, 0.2)`` → fastavro schemaless decode → ONE pipelined
    EVALSHA per event of a minimal Lua (SET NX EX of a de-dup key + DECRBY of a per-SKU
    counter, keys under a per-run prefix) → a tiny Avro result (event_id + status) through an
    idempotent producer (``acks=all``) and ``flush`` → synchronous commit. Events/s from the
    first consumed batch in hand to the last commit.
(b) the project's drain: ``taobao-connector run`` as its own process drains a backlog of the
    same size and mix; events/s from its first to its last result (broker timestamps, as in
    ``bench/pipeline_throughput.py``), and its peak RSS (VmHWM, read before it exits).
(c) ``Ledger.apply`` alone in batches of ``--batch`` versus the ceiling's Redis stage (the
    same pipelined minimal Lua as in (a)) for the same events.

For every measurement Redis is measured too (``CONFIG RESETSTAT`` before, ``INFO`` after):
``Σusec/ev`` is the sum of ``usec`` over all of ``INFO commandstats`` divided by the events
(commands a script calls are counted on their own *and* inside the script's own usec, so this
double-counts script bodies), ``cmds/ev`` the sum of ``calls`` (script-internal calls
included), ``lua/ev`` the EVAL/EVALSHA/FCALL calls alone, and ``cpu/ev`` the server process's
CPU time (``INFO cpu``, user + sys) per event, networking included.

Caveats: the drain's clock starts at its first *result*, after its first batch, so its figure
leaves out about one batch of work (≈ batch/events, 1.25 % at the defaults); the ceiling's
clock likewise starts with its first batch in hand. The ceiling's Redis client is redis-py's
synchronous one, the ledger's the asyncio one the connector uses.

    .venv/bin/python bench/ceiling.py --events 40000 --batch 500 --pairs 3
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import fastavro
import redis
import redis.asyncio
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)

from connector.contracts.codec import AvroCodec, RecordKind, load_schema
from connector.contracts.events import (
    OrderEvent,
    OrderLine,
    OrderType,
    WarehouseEvent,
    WarehouseType,
)
from connector.demo.embedded import EmbeddedBroker, EmbeddedRedis
from connector.kafka import EventProducer, Outbound, ensure_topics
from connector.keys import Keys
from connector.ledger.ledger import Ledger
from connector.settings import KafkaSettings

CODES = [
    "TSHIRT-RED-M", "TSHIRT-RED-L", "TSHIRT-BLUE-M", "SNEAKER-42", "SNEAKER-43",
    "MUG-WHITE", "JACKET-BLACK-M", "JACKET-BLACK-L",
]  # fmt: skip

PARTITIONS: Final = 3  # of each input topic, as in pipeline_throughput
POLL_TIMEOUT_S: Final = 0.2  # the connector's default KAFKA_BATCH_WAIT_MS
FETCH_WAIT_MAX_MS: Final = 50  # the connector's consumer setting (Tansu holds fetches)
DEDUPE_TTL_S: Final = 14 * 86_400  # the connector's default SYNC_DEDUPE_TTL_S
STARTUP_TIMEOUT_S: Final = 120.0  # connector start + group join until its first result
RUN_TIMEOUT_S: Final = 300.0  # any one measured run
STOP_TIMEOUT_S: Final = 30.0

# The ceiling's minimal Lua: one call per event, de-dup key then a counter per SKU line.
CEILING_LUA: Final = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
for i = 2, #KEYS do redis.call('DECRBY', KEYS[i], ARGV[i]) end
return 1
"""
RESULT_SCHEMA: Final = fastavro.parse_schema(
    {
        "type": "record",
        "name": "CeilingResult",
        "namespace": "bench.ceiling",
        "fields": [
            {"name": "event_id", "type": "string"},
            {"name": "status", "type": "string"},
        ],
    }
)
# Units taken off "available" per unit of the event's quantity (stocktake: not modelled).
ORDER_SIGN: Final = {"CREATED": 1, "CANCELLED": -1, "SHIPPED": 0, "REFUNDED": 0}
WAREHOUSE_SIGN: Final = {"RECEIVED": -1, "RETURNED": -1, "ADJUSTED": -1, "DAMAGED": 1}

Event = OrderEvent | WarehouseEvent


@dataclass(frozen=True, slots=True)
class RedisCost:
    usec: float  # Σ commandstats usec / event
    calls: float  # Σ commandstats calls / event
    lua: float  # EVAL/EVALSHA/FCALL calls / event
    cpu_us: float  # server CPU (user + sys) µs / event

    def __str__(self) -> str:
        return (
            f"redis Σusec/ev {self.usec:5.2f} µs, cmds/ev {self.calls:5.2f}, "
            f"lua/ev {self.lua:5.3f}, cpu/ev {self.cpu_us:5.2f} µs"
        )


@dataclass(frozen=True, slots=True)
class Measured:
    events: int
    seconds: float
    redis: RedisCost
    rss_mib: float | None = None

    @property
    def rate(self) -> float:
        return self.events / max(self.seconds, 1e-9)

    def line(self, name: str) -> str:
        rss = "" if self.rss_mib is None else f" | peak RSS {self.rss_mib:.0f} MiB"
        return (
            f"  {name:<16} {self.events:>7,} ev in {self.seconds:6.2f} s → "
            f"{self.rate:>8,.0f} ev/s | {self.redis}{rss}"
        )


# -- shared set-up ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Env:
    bootstrap: str
    redis_url: str
    gateway: str
    tmp: Path
    batch: int
    events: list[Event]
    codec: AvroCodec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000, help="backlog size per run")
    parser.add_argument("--batch", type=int, default=500, help="events per batch (all runs)")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pairs")
    args = parser.parse_args()
    if args.events < 2 or args.batch < 1 or args.pairs < 1:
        parser.error("--events ≥ 2, --batch ≥ 1 and --pairs ≥ 1")
    codec, rng = AvroCodec(), random.Random(7)
    start_ms = int(time.time() * 1000) - 3_600_000
    events = _events(args.events, rng, start_ms, 0)
    orders = sum(isinstance(e, OrderEvent) for e in events)
    print(
        f"{args.pairs} pairs, backlog {len(events):,} events over {len(CODES)} SKUs "
        f"({orders:,} order, {len(events) - orders:,} warehouse), batch {args.batch}",
        flush=True,
    )
    with (
        EmbeddedBroker() as broker,
        EmbeddedRedis() as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        sandbox, gateway = _start_sandbox(Path(tmp))
        try:
            env = Env(
                broker.bootstrap_servers, server.url, gateway, Path(tmp), args.batch, events, codec
            )
            _pairs(env, args.pairs)
        finally:
            _stop(sandbox)


def _pairs(env: Env, pairs: int) -> None:
    stats = redis.Redis.from_url(env.redis_url)
    rows: list[dict[str, Measured]] = []
    try:
        for i in range(pairs):
            forward = i % 2 == 0
            order = ["ceiling", "drain"] if forward else ["drain", "ceiling"]
            stage = ["ledger", "ceiling-redis"] if forward else ["ceiling-redis", "ledger"]
            print(f"pair {i + 1}/{pairs} (order: {' → '.join(order + stage)})", flush=True)
            runs: dict[str, Callable[[], Measured]] = {
                "ceiling": lambda: _ceiling(env, stats),
                "drain": lambda: _drain_run(env, stats),
                "ledger": lambda: _ledger_alone(env, stats),
                "ceiling-redis": lambda: _ceiling_redis(env, stats),
            }
            row: dict[str, Measured] = {}
            for name in order + stage:
                row[name] = runs[name]()
                print(row[name].line(name), flush=True)
            print(
                f"  ratio drain/ceiling {row['drain'].rate / row['ceiling'].rate:.3f}, "
                f"ledger/ceiling-redis {row['ledger'].rate / row['ceiling-redis'].rate:.3f}",
                flush=True,
            )
            rows.append(row)
    finally:
        stats.close()
    _summary(rows)


def _summary(rows: list[dict[str, Measured]]) -> None:
    def col(values: Sequence[float], fmt: str) -> str:
        low, mid, high = min(values), statistics.median(values), max(values)
        return f"{low:>10{fmt}} {mid:>10{fmt}} {high:>10{fmt}}"

    def rates(name: str) -> list[float]:
        return [r[name].rate for r in rows]

    drain_ratio = [r["drain"].rate / r["ceiling"].rate for r in rows]
    ledger_ratio = [r["ledger"].rate / r["ceiling-redis"].rate for r in rows]
    rss = [r["drain"].rss_mib or float("nan") for r in rows]
    rss_limit = 150e6 / 2**20  # 150 MB in MiB

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    n = len(rows)
    print()
    print(f"summary over {n} pairs{'':<13}{'min':>10} {'median':>10} {'max':>10}   target")
    print(f"  drain events/s{'':<19}{col(rates('drain'), ',.0f')}")
    print(f"  ceiling events/s{'':<17}{col(rates('ceiling'), ',.0f')}")
    print(
        f"  ratio drain/ceiling{'':<14}{col(drain_ratio, '.3f')}   ≥ 0.50: "
        f"{verdict(statistics.median(drain_ratio) >= 0.5)} on the median "
        f"({sum(r >= 0.5 for r in drain_ratio)}/{n} pairs)"
    )
    print(f"  ledger-alone events/s{'':<12}{col(rates('ledger'), ',.0f')}")
    print(f"  ceiling-redis events/s{'':<11}{col(rates('ceiling-redis'), ',.0f')}")
    print(
        f"  ratio ledger/ceiling-redis{'':<7}{col(ledger_ratio, '.3f')}   ≥ 0.50: "
        f"{verdict(statistics.median(ledger_ratio) >= 0.5)} on the median "
        f"({sum(r >= 0.5 for r in ledger_ratio)}/{n} pairs)"
    )
    print(
        f"  connector peak RSS MiB{'':<11}{col(rss, '.1f')}   ≤ 150 MB ({rss_limit:.1f} MiB): "
        f"{verdict(max(rss) <= rss_limit)} on the max"
    )
    for field, label in (("usec", "Σusec/ev µs"), ("calls", "cmds/ev"), ("cpu_us", "cpu/ev µs")):
        medians = ", ".join(
            f"{name} {statistics.median(getattr(r[name].redis, field) for r in rows):.2f}"
            for name in ("ceiling", "drain", "ledger", "ceiling-redis")
        )
        print(f"  redis {label} (medians): {medians}")


# -- Redis measurement -------------------------------------------------------------------


def _redis_reset(client: redis.Redis) -> float:
    client.config_resetstat()
    return _redis_cpu(client)


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _redis_cost(client: redis.Redis, cpu_before: float, events: int) -> RedisCost:
    stats = client.info("commandstats")
    cpu = _redis_cpu(client) - cpu_before
    usec = sum(float(v["usec"]) for v in stats.values())
    calls = sum(int(v["calls"]) for v in stats.values())
    lua = sum(
        int(v["calls"])
        for k, v in stats.items()
        if k.removeprefix("cmdstat_").split("|")[0] in {"eval", "evalsha", "fcall", "eval_ro"}
    )
    return RedisCost(usec / events, calls / events, lua / events, cpu * 1e6 / events)


def _cleanup(client: redis.Redis, pattern: str) -> None:
    """Remove one run's keys (not timed), so every run meets the same server."""
    batch: list[bytes] = []
    for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


# -- (a) the ceiling ---------------------------------------------------------------------


class _CeilingRedis:
    """The ceiling's Redis stage: one pipelined EVALSHA of the minimal Lua per event."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._sha = client.script_load(CEILING_LUA)
        self._seen = f"{{{prefix}}}:seen:"
        self._sku = f"{{{prefix}}}:avail:"

    def apply(self, records: Sequence[tuple[bool, dict[str, Any]]]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        sha, seen, sku, ttl = self._sha, self._seen, self._sku, DEDUPE_TTL_S
        for is_order, rec in records:
            if is_order:
                sign = ORDER_SIGN.get(rec["type"], 0)
                lines = rec["lines"]
                keys = [sku + ln["sku"] for ln in lines]
                deltas = [sign * ln["quantity"] for ln in lines]
                pipe.evalsha(sha, 1 + len(keys), seen + rec["event_id"], *keys, ttl, *deltas)
            else:
                delta = WAREHOUSE_SIGN.get(rec["type"], 0) * rec["quantity"]
                pipe.evalsha(sha, 2, seen + rec["event_id"], sku + rec["sku"], ttl, delta)
        return pipe.execute()


def _ceiling(env: Env, stats: redis.Redis) -> Measured:
    run = uuid.uuid4().hex[:8]
    kafka = _kafka(env.bootstrap, f"ceil-{run}", env.batch)
    _topics(kafka)
    _produce_backlog(env, kafka)
    orders_schema = fastavro.parse_schema(load_schema(RecordKind.ORDER))
    warehouse_schema = fastavro.parse_schema(load_schema(RecordKind.WAREHOUSE))
    client = redis.Redis.from_url(env.redis_url)
    stage = _CeilingRedis(client, f"ceil-{run}")
    consumer = Consumer(
        {
            "bootstrap.servers": env.bootstrap,
            "group.id": kafka.group_id,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
        }
    )
    producer = Producer(
        {"bootstrap.servers": env.bootstrap, "acks": "all", "enable.idempotence": True}
    )
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    try:
        # Warm the producer (metadata, idempotent producer id) before the clock starts.
        producer.produce(kafka.results_topic, b"", b"warm-up", on_delivery=delivered)
        if producer.flush(30) or failures:
            raise SystemExit(f"ceiling: warm-up produce failed: {failures}")
        consumer.assign(
            [
                TopicPartition(topic, p, OFFSET_BEGINNING)
                for topic in (kafka.orders_topic, kafka.warehouse_topic)
                for p in range(PARTITIONS)
            ]
        )
        n, done, began = len(env.events), 0, 0.0
        orders_topic, results_topic, batch = kafka.orders_topic, kafka.results_topic, env.batch
        reader, writer = fastavro.schemaless_reader, fastavro.schemaless_writer
        cpu = _redis_reset(stats)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while done < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"ceiling: only {done}/{n} events after {RUN_TIMEOUT_S:.0f} s")
            messages = consumer.consume(batch, POLL_TIMEOUT_S)
            if not messages:
                continue
            if not began:
                began = time.perf_counter()
            records: list[tuple[bool, dict[str, Any]]] = []
            for m in messages:
                if m.error() is not None:
                    raise SystemExit(f"ceiling: consume error {m.error()}")
                is_order = m.topic() == orders_topic
                schema = orders_schema if is_order else warehouse_schema
                records.append((is_order, reader(io.BytesIO(m.value()), schema, None)))
            replies = stage.apply(records)
            for (_, rec), reply in zip(records, replies, strict=True):
                buf = io.BytesIO()
                event_id = rec["event_id"]
                writer(buf, RESULT_SCHEMA, {"event_id": event_id, "status": _status(reply)})
                producer.produce(
                    results_topic, buf.getvalue(), event_id.encode(), on_delivery=delivered
                )
            if producer.flush(max(0.0, deadline - time.monotonic())) or failures:
                raise SystemExit(f"ceiling: results not delivered: {failures[:3]}")
            consumer.commit(asynchronous=False)
            done += len(messages)
        elapsed = time.perf_counter() - began
        cost = _redis_cost(stats, cpu, n)
    finally:
        consumer.close()
        producer.flush(5)
        client.close()
    _cleanup(stats, f"{{ceil-{run}}}:*")
    return Measured(n, elapsed, cost)


def _status(reply: Any) -> str:
    return "applied" if reply == 1 else "duplicate"


# -- (b) the project's drain -------------------------------------------------------------


def _drain_run(env: Env, stats: redis.Redis) -> Measured:
    run = uuid.uuid4().hex[:8]
    kafka = _kafka(env.bootstrap, run, env.batch)
    _topics(kafka)
    _produce_backlog(env, kafka)
    reader = _reader(env.bootstrap, kafka.results_topic)
    log = env.tmp / f"connector-{run}.log"
    cpu = _redis_reset(stats)
    with log.open("w") as out:
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
            env=_env(kafka, env.redis_url, env.gateway, run),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        n = len(env.events)
        first, last = _drain(reader, n, connector, log)
        cost = _redis_cost(stats, cpu, n)
        rss = _peak_rss_mib(connector.pid)
    finally:
        _stop(connector)
        reader.close()
    _cleanup(stats, f"*bench-{run}*")
    # (n - 1) intervals between the first and the last result, as pipeline_throughput does.
    return Measured(n, (last - first) * n / (n - 1), cost, rss)


def _drain(
    reader: Any, n: int, connector: subprocess.Popen[bytes], log: Path
) -> tuple[float, float]:
    seen, first, last = 0, 0.0, 0.0
    started = time.monotonic()
    while seen < n:
        now = time.monotonic()
        if connector.poll() is not None:
            raise SystemExit(
                f"connector exited ({connector.returncode}) after {seen}/{n} results: "
                f"{log.read_text(errors='replace')[-2000:]}"
            )
        if (not seen and now - started > STARTUP_TIMEOUT_S) or now - started > RUN_TIMEOUT_S:
            raise SystemExit(
                f"only {seen}/{n} results after {now - started:.0f} s: "
                f"{log.read_text(errors='replace')[-2000:]}"
            )
        for m in reader.consume(1000, 0.5):
            if m.error() is None:
                stamp = m.timestamp()[1] / 1000
                first = first or stamp
                last = stamp
                seen += 1
    return first, last


def _reader(bootstrap: str, topic: str) -> Any:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-reader", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    return consumer


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- (c) the ledger alone vs the ceiling's Redis stage ------------------------------------


def _ledger_alone(env: Env, stats: redis.Redis) -> Measured:
    return asyncio.run(_ledger_async(env, stats))


async def _ledger_async(env: Env, stats: redis.Redis) -> Measured:
    run = uuid.uuid4().hex[:8]
    client = redis.asyncio.Redis.from_url(env.redis_url)
    try:
        # Load the scripts (server-wide) and open the connection, not timed.
        warm = Ledger(
            client, Keys(f"warm-{run}"), dedupe_ttl_s=DEDUPE_TTL_S, default_warehouse="DEFAULT"
        )
        await warm.create_marker()
        await warm.apply(env.events[:1])
        ledger = Ledger(
            client, Keys(f"ledger-{run}"), dedupe_ttl_s=DEDUPE_TTL_S, default_warehouse="DEFAULT"
        )
        await ledger.create_marker()  # as a connector's first start does
        events, batch = env.events, env.batch
        cpu = _redis_reset(stats)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        began = time.perf_counter()
        for offset in range(0, len(events), batch):
            if time.monotonic() > deadline:
                raise SystemExit(f"ledger: not done after {RUN_TIMEOUT_S:.0f} s")
            await ledger.apply(events[offset : offset + batch])
        elapsed = time.perf_counter() - began
        cost = _redis_cost(stats, cpu, len(events))
    finally:
        await client.aclose()
    _cleanup(stats, f"*warm-{run}*")
    _cleanup(stats, f"*ledger-{run}*")
    return Measured(len(events), elapsed, cost)


def _ceiling_redis(env: Env, stats: redis.Redis) -> Measured:
    run = uuid.uuid4().hex[:8]
    orders_schema = fastavro.parse_schema(load_schema(RecordKind.ORDER))
    warehouse_schema = fastavro.parse_schema(load_schema(RecordKind.WAREHOUSE))
    # The records the ceiling's decode step hands its Redis stage; decoded here, not timed.
    records: list[tuple[bool, dict[str, Any]]] = []
    for e in env.events:
        is_order = isinstance(e, OrderEvent)
        payload = (
            env.codec.encode_order(e, topic="orders")
            if isinstance(e, OrderEvent)
            else env.codec.encode_warehouse(e, topic="warehouse")
        )
        schema = orders_schema if is_order else warehouse_schema
        records.append((is_order, fastavro.schemaless_reader(io.BytesIO(payload), schema, None)))
    client = redis.Redis.from_url(env.redis_url)
    try:
        stage = _CeilingRedis(client, f"ceilr-{run}")
        client.ping()
        batch = env.batch
        statuses: list[str] = []
        cpu = _redis_reset(stats)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        began = time.perf_counter()
        for offset in range(0, len(records), batch):
            if time.monotonic() > deadline:
                raise SystemExit(f"ceiling-redis: not done after {RUN_TIMEOUT_S:.0f} s")
            statuses.extend(_status(r) for r in stage.apply(records[offset : offset + batch]))
        elapsed = time.perf_counter() - began
        cost = _redis_cost(stats, cpu, len(records))
    finally:
        client.close()
    _cleanup(stats, f"{{ceilr-{run}}}:*")
    return Measured(len(records), elapsed, cost)


# -- helpers copied from bench/pipeline_throughput.py (kept unchanged there) ---------------


def _start_sandbox(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    log = tmp / "sandbox.log"
    with log.open("w") as out:
        # No --qps: the sandbox does not limit calls.
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector.sandbox", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = re.search(r"(http://[\d.]+:\d+)/router/rest", log.read_text())
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    _stop(proc)
    raise SystemExit(f"sandbox did not start: {log.read_text()}")


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _kafka(bootstrap: str, run: str, batch: int) -> KafkaSettings:
    # Connector defaults except what a local run needs: a short session timeout (group join
    # in ~3 s instead of ~23 s) and the batch size under test.
    return KafkaSettings.model_validate(
        {
            "bootstrap_servers": bootstrap,
            "group_id": f"bench-{run}",
            "orders_topic": f"bench-orders-{run}",
            "warehouse_topic": f"bench-warehouse-{run}",
            "results_topic": f"bench-results-{run}",
            "alerts_topic": f"bench-alerts-{run}",
            "dead_letter_topic": f"bench-dlq-{run}",
            "pushes_topic": f"bench-pushes-{run}",
            "session_timeout_ms": 6000,
            "batch_max_events": batch,
        }
    )


def _topics(kafka: KafkaSettings) -> None:
    ensure_topics(kafka, [kafka.orders_topic, kafka.warehouse_topic], partitions=PARTITIONS)
    ensure_topics(
        kafka,
        [kafka.results_topic, kafka.alerts_topic, kafka.dead_letter_topic, kafka.pushes_topic],
        partitions=1,
    )


def _produce_backlog(env: Env, kafka: KafkaSettings) -> None:
    producer = EventProducer(kafka)
    try:
        producer.send([_outbound(env.codec, kafka, e) for e in env.events], timeout_s=120)
    finally:
        producer.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(kafka: KafkaSettings, redis_url: str, gateway: str, run: str) -> dict[str, str]:
    prefixes = ("TAOBAO_", "REDIS_", "KAFKA_", "SYNC_", "CONNECTOR_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(
        {
            "TAOBAO_APP_KEY": "sandbox-app-key",
            "TAOBAO_APP_SECRET": "sandbox-app-secret",
            "TAOBAO_SESSION": "sandbox-session",
            "TAOBAO_REFRESH_TOKEN": "sandbox-refresh-token",
            "TAOBAO_GATEWAY_URL": f"{gateway}/router/rest",
            "TAOBAO_TOKEN_URL": f"{gateway}/token",
            # The default call budget (10 calls/s, burst 1): the projection runs beside
            # ingest as in production, and a drain measures ingest, not a Taobao flood.
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": f"bench-{run}",
            # The health/metrics server stays on, on a free loopback port (8080 may be taken).
            "CONNECTOR_HTTP_HOST": "127.0.0.1",
            "CONNECTOR_HTTP_PORT": str(_free_port()),
            "OTEL_TRACES_EXPORTER": "none",
            **{
                f"KAFKA_{k.upper()}": str(v)
                for k, v in kafka.model_dump(exclude_none=True).items()
                if not isinstance(v, dict)
            },
        }
    )
    return env


def _events(n: int, rng: random.Random, start_ms: int, first: int) -> list[Event]:
    events: list[Event] = []
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


def _outbound(codec: AvroCodec, kafka: KafkaSettings, e: Event) -> Outbound:
    if isinstance(e, OrderEvent):
        return Outbound(
            kafka.orders_topic, codec.encode_order(e, topic=kafka.orders_topic), e.order_id.encode()
        )
    return Outbound(
        kafka.warehouse_topic,
        codec.encode_warehouse(e, topic=kafka.warehouse_topic),
        e.sku.encode(),
    )


if __name__ == "__main__":
    main()
