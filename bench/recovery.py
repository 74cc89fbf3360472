"""Restart to first result after ``kill -9``: how long a crashed replica holds up its inputs.

Real parts, as in ``bench/pipeline_throughput.py``: the embedded broker (Tansu) and Redis
(Valkey), the sandbox gateway and the connector as its own process (``taobao-connector run``)
at its default settings (``KAFKA_SESSION_TIMEOUT_MS`` 10 s). Each round: the connector has
answered an event; it is killed with SIGKILL and started again at once, as Kubernetes
restarts a crashed container in the same pod; one event is produced right after the kill.
The figure is the time from the kill to that event's result on the results topic. Printed
per round and as min/median/max, for each membership mode asked for:

- ``dynamic``: each start is a new group member; the group waits for the killed member's
  session to time out before it hands its partitions on;
- ``static``: ``KAFKA_GROUP_INSTANCE_ID`` set (the chart sets it from the pod's name with
  ``kafka.staticMembership``): the restarted member takes its partitions back at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

# The shared set-up (a script's own folder is first on sys.path).
from pipeline_throughput import _env, _start_sandbox

from connector.contracts.codec import AvroCodec
from connector.contracts.events import WarehouseEvent, WarehouseType
from connector.demo.embedded import EmbeddedBroker, EmbeddedRedis
from connector.kafka import EventProducer, Outbound, ensure_topics
from connector.settings import KafkaSettings

ROUND_TIMEOUT_S = 90.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--modes", default="dynamic,static", help="comma-separated: dynamic, static"
    )
    args = parser.parse_args()
    with EmbeddedBroker() as broker, EmbeddedRedis() as redis, tempfile.TemporaryDirectory() as tmp:
        sandbox, gateway = _start_sandbox(Path(tmp))
        try:
            for mode in args.modes.split(","):
                figures = _mode(mode, args.rounds, broker.bootstrap_servers, redis.url, gateway)
                _print(mode, figures)
        finally:
            sandbox.terminate()
            sandbox.wait(10)


def _mode(mode: str, rounds: int, bootstrap: str, redis_url: str, gateway: str) -> list[float]:
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings.model_validate(
        {
            "bootstrap_servers": bootstrap,
            "group_id": f"recovery-{run}",
            "orders_topic": f"rec-orders-{run}",
            "warehouse_topic": f"rec-warehouse-{run}",
            "results_topic": f"rec-results-{run}",
            "alerts_topic": f"rec-alerts-{run}",
            "dead_letter_topic": f"rec-dlq-{run}",
            "pushes_topic": f"rec-pushes-{run}",
        }
    )
    ensure_topics(kafka, [getattr(kafka, f) for f in kafka.TOPICS], partitions=1)
    env = _env(kafka, redis_url, gateway, run)
    env["CONNECTOR_HTTP_PORT"] = "0"
    env["CONNECTOR_LOG_FORMAT"] = "text"
    if mode == "static":
        env["KAFKA_GROUP_INSTANCE_ID"] = f"connector-{run}-0"
    log = Path(tempfile.gettempdir()) / f"recovery-{run}.log"
    results = _results_reader(bootstrap, kafka.results_topic)
    producer = EventProducer(kafka)
    figures: list[float] = []
    process = _start(env, log)
    try:
        _answered(producer, kafka, results, f"warm-{run}", process, log)
        for n in range(rounds):
            process.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            process.wait(10)
            process = _start(env, log)
            _answered(producer, kafka, results, f"r{n}-{run}", process, log)
            figures.append(time.monotonic() - killed)
            print(f"  {mode} round {n + 1}: {figures[-1]:.1f} s", flush=True)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(40)
        producer.close()
        results.close()
    return figures


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "connector", "run"],
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _results_reader(bootstrap: str, topic: str) -> Any:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    reader.assign([TopicPartition(topic, 0, 0)])
    return reader


def _answered(
    producer: EventProducer,
    kafka: KafkaSettings,
    results: Any,
    event_id: str,
    process: subprocess.Popen[bytes],
    log: Path,
) -> None:
    """Produce one event and wait for its result."""
    codec = AvroCodec()
    event = WarehouseEvent(
        event_id, "DEFAULT", WarehouseType.STOCKTAKE, "MUG-WHITE", 10, int(time.time() * 1000)
    )
    value = codec.encode_warehouse(event, topic=kafka.warehouse_topic)
    producer.send([Outbound(kafka.warehouse_topic, value, b"MUG-WHITE")], timeout_s=15)
    deadline = time.monotonic() + ROUND_TIMEOUT_S
    while time.monotonic() < deadline:
        for message in results.consume(100, 0.05):
            if (
                message.error() is None
                and codec.decode_result(message.value()).event_id == event_id
            ):
                return
        if process.poll() is not None:
            raise SystemExit(f"the connector exited ({process.returncode}); log: {log}")
    raise SystemExit(f"no result for {event_id} after {ROUND_TIMEOUT_S:.0f} s; log: {log}")


def _print(mode: str, figures: list[float]) -> None:
    if not figures:
        return
    print(
        f"{mode}: restart to first result after kill -9, {len(figures)} rounds: "
        f"min {min(figures):.1f} s, median {statistics.median(figures):.1f} s, "
        f"max {max(figures):.1f} s"
    )


if __name__ == "__main__":
    main()
