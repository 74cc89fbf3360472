"""``taobao-connector demo``: the whole product on embedded parts, with a report.

Starts a Kafka-protocol broker and a Redis-compatible server (unless
``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` are given), the Taobao sandbox gateway with its
demo shop and some faults switched on, and the connector itself; plays the story in
``connector.demo.scenario`` step by step, waiting for each step's results (which come
without waiting for Taobao: the projection pushes beside them); then prints, per merchant
code, the ledger's availability, what Taobao shows and the shelf state, the results by
status, the push records (what Taobao was told) and the alerts, and exits 1 if Taobao
disagrees with the ledger anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from connector.contracts.codec import AvroCodec
from connector.contracts.events import OrderEvent, StockEvent
from connector.contracts.records import StockAlert, StockPush, SyncResult, TaobaoState
from connector.demo.embedded import EmbeddedBroker, EmbeddedRedis
from connector.demo.scenario import POISON, UNMAPPED_CODE, TaobaoSale, demo_scenario
from connector.kafka import EventConsumer, EventProducer, Outbound, ensure_topics
from connector.push.planner import target
from connector.sandbox.faults import FaultConfig
from connector.sandbox.server import SandboxConfig, SandboxServer
from connector.service.app import Connector
from connector.settings import KafkaSettings, Settings

__all__ = ["run_demo"]

STEP_TIMEOUT_S: Final = 60.0
_ROUTINE_EFFECTS: Final = frozenset({"reserved", "stocktake_applied", "on_hand_changed"})
_QUIET: Final = frozenset({"SYNCED", "PENDING"})
DEMO_FAULTS: Final = FaultConfig(
    error_rates={"isp.remote-service-timeout": 0.05, "10": 0.03},
    drop_after_apply_rate=0.05,
    methods=("taobao.skus.quantity.update", "taobao.item.quantity.update"),
)


def _say(text: str = "") -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass(slots=True)
class _Outputs:
    results: list[SyncResult] = field(default_factory=list)
    alerts: list[StockAlert] = field(default_factory=list)
    pushes: list[StockPush] = field(default_factory=list)


async def run_demo(env: Mapping[str, str]) -> int:
    with contextlib.ExitStack() as stack:
        bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS") or _start_broker(stack)
        redis_url = env.get("REDIS_URL") or _start_redis(stack)
        # Each retry of an injected fault is logged as a warning; the report counts them.
        logging.getLogger("connector.taobao.client").setLevel(logging.ERROR)
        logging.getLogger("connector.push.projection").setLevel(logging.WARNING)
        logging.getLogger("connector.push.loop").setLevel(logging.ERROR)
        sandbox = stack.enter_context(SandboxServer(SandboxConfig(seed=7, faults=DEMO_FAULTS)))
        _say(
            f"broker {bootstrap} · Redis {redis_url.split('@')[-1]} · Taobao sandbox {sandbox.url}"
        )
        settings = _settings(sandbox, bootstrap, redis_url)
        await asyncio.to_thread(
            ensure_topics,
            settings.kafka,
            [settings.kafka.orders_topic, settings.kafka.warehouse_topic],
            partitions=3,
        )
        await asyncio.to_thread(
            ensure_topics,
            settings.kafka,
            [
                settings.kafka.results_topic,
                settings.kafka.alerts_topic,
                settings.kafka.dead_letter_topic,
                settings.kafka.pushes_topic,
            ],
            partitions=1,
        )
        return await _play(settings, sandbox)
    raise AssertionError("unreachable")


def _start_broker(stack: contextlib.ExitStack) -> str:
    _say("starting an embedded Kafka-protocol broker…")
    return stack.enter_context(EmbeddedBroker()).bootstrap_servers


def _start_redis(stack: contextlib.ExitStack) -> str:
    _say("starting an embedded Redis-compatible server…")
    return stack.enter_context(EmbeddedRedis()).url


def _settings(sandbox: SandboxServer, bootstrap: str, redis_url: str) -> Settings:
    run = uuid.uuid4().hex[:8]
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
                "qps": 50,
                "burst": 10,
                "backoff_base_s": 0.05,
                # Taobao's own orders come in through its message service.
                "tmc_enabled": True,
                "tmc_poll_s": 0.1,
                "tmc_idle_max_s": 0.5,
            },
            "redis": {"url": redis_url, "key_prefix": f"demo-{run}"},
            "kafka": {
                "bootstrap_servers": bootstrap,
                "group_id": f"demo-{run}",
                "orders_topic": f"demo-orders-{run}",
                "warehouse_topic": f"demo-warehouse-{run}",
                "results_topic": f"demo-results-{run}",
                "alerts_topic": f"demo-alerts-{run}",
                "dead_letter_topic": f"demo-dead-letter-{run}",
                "pushes_topic": f"demo-pushes-{run}",
                "session_timeout_ms": 6000,
                "batch_wait_ms": 100,
            },
            "sync": {"low_stock_threshold": 3, "sweep_interval_s": 0.5},
        }
    )


async def _play(settings: Settings, sandbox: SandboxServer) -> int:
    # What the merchant had taken down before we start must still be down at the end.
    async with httpx.AsyncClient(timeout=10) as admin:
        before = (await admin.get(f"{sandbox.url}/sandbox/state")).json()
    initially_down = {i["num_iid"] for i in before["items"] if i["approve_status"] == "instock"}
    connector = await Connector.start(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(connector.run(stop))
    codec = AvroCodec.from_settings(settings.kafka)
    producer = EventProducer(settings.kafka)
    reader = EventConsumer(
        settings.kafka.model_copy(update={"group_id": f"{settings.kafka.group_id}-reader"}),
        [settings.kafka.results_topic, settings.kafka.alerts_topic, settings.kafka.pushes_topic],
    )
    await asyncio.to_thread(reader.start)
    outputs = _Outputs()
    sent: list[StockEvent | bytes] = []
    bridged = 0  # order events the bridge produces for the sales made on Taobao
    try:
        for number, step in enumerate(demo_scenario(int(time.time() * 1000) - 3_600_000), 1):
            _say(f"\n[{number}] {step.title}")
            step_started = time.monotonic()
            messages = [_outbound(codec, settings.kafka, e) for e in step.events]
            await asyncio.to_thread(producer.send, messages, timeout_s=30)
            sent.extend(step.events)
            if step.taobao:
                await _sell_on_taobao(sandbox, step.taobao)
                bridged += sum(sale.events for sale in step.taobao)
            expected = len(sent) + bridged
            await _await_results(reader, codec, settings.kafka, outputs, expected, task)
            _say(f"    ({time.monotonic() - step_started:.2f}s from send to the last result)")
        await _converge(connector, task)
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await _drain(reader, codec, settings.kafka, outputs)
        return await _report(connector, settings, sandbox, sent, outputs, initially_down)
    finally:
        stop.set()
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await asyncio.to_thread(reader.close)
        await asyncio.to_thread(producer.close)
        await connector.aclose()


async def _sell_on_taobao(sandbox: SandboxServer, sales: Sequence[TaobaoSale]) -> None:
    """Buyers order on Taobao itself (once the bridge has permitted the seller's topics:
    TMC delivers nothing published before)."""
    async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as admin:
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while not (await admin.get("/sandbox/state")).json()["tmc"]["topics"]:
            if time.monotonic() > deadline:
                raise RuntimeError("the message-service bridge never permitted the seller")
            await asyncio.sleep(0.2)
        for sale in sales:
            body = {"num_iid": sale.num_iid, "quantity": sale.quantity}
            if sale.sku_id is not None:
                body["sku_id"] = sale.sku_id
            answer = (await admin.post("/sandbox/orders", json=body)).raise_for_status().json()
            for step in sale.then:
                (await admin.post(f"/sandbox/orders/{answer['tid']}/{step}")).raise_for_status()
            moved = f" → {', '.join(sale.then)}" if sale.then else ""
            _say(
                f"      Taobao trade {answer['tid']}: {sale.quantity} of item {sale.num_iid}{moved}"
            )


def _outbound(codec: AvroCodec, kafka: KafkaSettings, event: StockEvent | bytes) -> Outbound:
    if isinstance(event, bytes):
        return Outbound(kafka.orders_topic, event, key=b"poison")
    if isinstance(event, OrderEvent):
        topic = kafka.orders_topic
        return Outbound(topic, codec.encode_order(event, topic=topic), key=event.order_id.encode())
    topic = kafka.warehouse_topic
    return Outbound(topic, codec.encode_warehouse(event, topic=topic), key=event.sku.encode())


async def _await_results(
    reader: EventConsumer,
    codec: AvroCodec,
    kafka: KafkaSettings,
    outputs: _Outputs,
    expected: int,
    task: asyncio.Task[None],
) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    before, pushed = len(outputs.results), len(outputs.pushes)
    while len(outputs.results) < expected:
        if task.done():
            task.result()  # surfaces the connector's error
            raise RuntimeError("the connector stopped")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for results ({len(outputs.results)}/{expected})")
        await _poll(reader, codec, kafka, outputs)
    fresh = outputs.results[before:]
    counts = Counter(r.status.value.lower() for r in fresh)
    _say("    results: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    for result in fresh:
        for line in result.skus:
            if line.effect not in _ROUTINE_EFFECTS or line.taobao_state.value not in _QUIET:
                _say(
                    f"      {result.event_id or '(undecodable)'}: {line.sku} {line.effect}, "
                    f"available {line.available}, Taobao {line.taobao_state.value.lower()} "
                    f"(target {line.taobao_target})"
                )
        if result.error_code:
            _say(f"      {result.event_type} at offset {result.source.offset}: {result.error_code}")
    for push in outputs.pushes[pushed:]:
        _say("      pushed " + _push_line(push))


async def _poll(
    reader: EventConsumer, codec: AvroCodec, kafka: KafkaSettings, outputs: _Outputs
) -> int:
    messages = await asyncio.to_thread(reader.poll_batch, 500, 0.2)
    for message in messages:
        if message.value is None:
            continue
        if message.topic == kafka.results_topic:
            outputs.results.append(codec.decode_result(message.value))
        elif message.topic == kafka.pushes_topic:
            outputs.pushes.append(codec.decode_push(message.value))
        else:
            outputs.alerts.append(codec.decode_alert(message.value))
    return len(messages)


async def _drain(
    reader: EventConsumer, codec: AvroCodec, kafka: KafkaSettings, outputs: _Outputs
) -> None:
    """Read the outputs still on their way (the last push records) until the topics go quiet."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and await _poll(reader, codec, kafka, outputs):
        pass


def _push_line(push: StockPush) -> str:
    skus = ", ".join(f"{s.sku}={s.quantity}@v{s.version}" for s in push.skus)
    calls = ", ".join(c.method.removeprefix("taobao.") for c in push.calls) or "no call"
    shelf = f" [{', '.join(push.shelf).lower()}]" if push.shelf else ""
    error = f" ({push.error_class})" if push.error_class else ""
    return f"item {push.num_iid}: {skus} via {calls} → {push.outcome.value.lower()}{shelf}{error}"


async def _converge(connector: Connector, task: asyncio.Task[None]) -> None:
    """Wait until nothing is pending but codes Taobao does not list (they wait, pending,
    for the merchant to list them) or refused (parked until they change again)."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not task.done() and time.monotonic() < deadline:
        pending = set(await connector.ledger.due(2**62, 10_000)) - {UNMAPPED_CODE}
        stock = await connector.ledger.stock(pending)
        # A code Taobao refused waits (parked) for its next change: not for the demo.
        if all(s.taobao_state == TaobaoState.FAILED.value for s in stock.values()):
            return
        await asyncio.sleep(0.2)


async def _report(
    connector: Connector,
    settings: Settings,
    sandbox: SandboxServer,
    sent: list[StockEvent | bytes],
    outputs: _Outputs,
    initially_down: set[int],
) -> int:
    async with httpx.AsyncClient(timeout=10) as admin:
        state: dict[str, Any] = (await admin.get(f"{sandbox.url}/sandbox/state")).json()
        calls: list[dict[str, Any]] = (await admin.get(f"{sandbox.url}/sandbox/calls")).json()[
            "calls"
        ]
    codes = sorted({e.sku for e in sent if not isinstance(e, bytes | OrderEvent)})
    ledger = await connector.ledger.stock(codes)
    taobao = _taobao_view(state)
    problems: list[str] = []
    refused: list[str] = []
    _say("\nper merchant code (ledger → Taobao):")
    header = ("code", "on hand", "reserved", "avail", "target", "taobao")
    _say("  {:<16} {:>7} {:>8} {:>6} {:>6} {:>6}  shelf".format(*header))
    for code in codes:
        stock = ledger[code]
        want = target(stock.available, settings.sync.safety_stock)
        shown = taobao.get(code)
        qty, shelf = shown if shown else ("-", "not on Taobao")
        _say(
            f"  {code:<16} {sum(stock.on_hand.values()):>7} {stock.reserved:>8} "
            f"{stock.available:>6} {want:>6} {qty!s:>6}  {shelf}"
        )
        if shown is None and code != UNMAPPED_CODE:
            problems.append(f"{code} is not on Taobao")
        if shown is not None and shown[0] != want:
            if stock.taobao_state == TaobaoState.FAILED.value:
                refused.append(code)  # Taobao refused it: alerted, parked until it changes
            else:
                problems.append(f"{code}: Taobao {shown[0]}, ledger target {want}")
    problems += _shelf_problems(state, initially_down)
    statuses = Counter(r.status.value.lower() for r in outputs.results)
    alerts = Counter(a.kind.value.lower() for a in outputs.alerts)
    api_calls = [c for c in calls if c["method"].startswith("taobao.")]
    _say(
        f"\n{len(sent)} input events ({sum(1 for e in sent if e == POISON)} poison) → "
        f"{len(outputs.results)} results: "
        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    )
    _say("alerts: " + ", ".join(f"{n} {k}" for k, n in sorted(alerts.items())))
    outcomes = Counter(p.outcome.value.lower() for p in outputs.pushes)
    changes = Counter(t.lower() for p in outputs.pushes for t in p.shelf)
    _say(
        f"push records: {len(outputs.pushes)} ("
        + ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
        + ")"
        + (": " + ", ".join(f"{n} {t}" for t, n in sorted(changes.items())) if changes else "")
    )
    faults = sum(1 for c in api_calls if c["fault"])
    errors = sum(1 for c in api_calls if c["code"])
    _say(f"Taobao: {len(api_calls)} calls, {faults} with an injected fault, {errors} errors")
    if problems:
        _say("\nDISAGREEMENT: " + "; ".join(problems))
        return 1
    if refused:
        _say(
            f"\nTaobao refused {', '.join(refused)} (its campaign lock: alerted, parked until "
            "the code changes again)."
        )
    _say("\nTaobao agrees with the ledger for every listed merchant code it accepts.")
    return 0


def _taobao_view(state: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    view: dict[str, tuple[int, str]] = {}
    for item in state["items"]:
        shelf = item["approve_status"]
        for sku in item.get("skus") or []:
            view[sku["outer_id"]] = (sku["quantity"], shelf)
        if not item.get("skus") and item.get("outer_id"):
            view[item["outer_id"]] = (item["num"], shelf)
    return view


def _shelf_problems(state: Mapping[str, Any], initially_down: set[int]) -> list[str]:
    """An item must be off sale at zero, and an item the merchant had taken down must stay
    down whatever its stock; every other item must be on sale."""
    problems = []
    for item in state["items"]:
        down = item["num"] == 0 or item["num_iid"] in initially_down
        want = "instock" if down else "onsale"
        if item["approve_status"] != want:
            problems.append(
                f"item {item['num_iid']} ({item['outer_id']}) is {item['approve_status']}, "
                f"expected {want}"
            )
    return problems
