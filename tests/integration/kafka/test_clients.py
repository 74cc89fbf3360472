"""The Kafka boundary against a real (Tansu) broker.

A consumer-group join costs about 3 s here, so each test joins as few times as it can: one
test covers round trip, partial commit and redelivery with two joins in all.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition

from connector.demo.embedded import EmbeddedBroker
from connector.errors import ConfigError, DependencyError
from connector.kafka import (
    EventConsumer,
    EventProducer,
    Inbound,
    Outbound,
    check_broker,
    client_config,
    ensure_topics,
)
from connector.settings import KafkaSettings

pytestmark = pytest.mark.integration

JOIN_TIMEOUT_S = 20.0


def drain(
    consumer: EventConsumer, want: int, *, timeout_s: float = JOIN_TIMEOUT_S
) -> list[Inbound]:
    """Poll until ``want`` messages arrived (or the time is up); includes the group join."""
    got: list[Inbound] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        got += consumer.poll_batch(want - len(got), 0.2)
    return got


def quiet(consumer: EventConsumer, seconds: float) -> list[Inbound]:
    """Everything delivered during ``seconds`` (expected: nothing)."""
    got: list[Inbound] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += consumer.poll_batch(100, 0.1)
    return got


def committed(settings: KafkaSettings, topic: str) -> dict[int, int]:
    """The group's committed offsets, read without joining the group."""
    reader = Consumer({**client_config(settings), "group.id": settings.group_id})
    try:
        parts = reader.committed([TopicPartition(topic, p) for p in range(3)], timeout=5)
    finally:
        reader.close()
    return {tp.partition: tp.offset for tp in parts if tp.offset >= 0}


@pytest.fixture
def producer(kafka_settings: KafkaSettings) -> Iterator[EventProducer]:
    with EventProducer(kafka_settings) as p:
        yield p


def test_round_trip_partial_commit_and_redelivery(
    kafka_settings: KafkaSettings, producer: EventProducer
) -> None:
    topic = kafka_settings.orders_topic
    sent = [
        Outbound(topic, f"v{i}".encode(), key=f"k{i}".encode(), headers=(("event-id", b"%d" % i),))
        for i in range(30)
    ]
    producer.send(sent, timeout_s=10)

    with EventConsumer(kafka_settings, [topic]) as first:
        received = drain(first, 30)
        assert sorted(m.value or b"" for m in received) == sorted(m.value for m in sent)
        one = received[0]
        assert one.key == b"k" + (one.value or b"")[1:]
        assert one.headers == (("event-id", (one.value or b"")[1:]),)
        assert one.timestamp_ms is not None and one.timestamp_ms > 0
        partitions = {m.partition for m in received}
        assert len(partitions) >= 2, "30 keys should spread over the 3 partitions"

        kept = received[0].partition  # commit only this partition's messages
        batch = [m for m in received if m.partition == kept]
        first.commit(batch)
        assert committed(kafka_settings, topic) == {kept: max(m.offset for m in batch) + 1}

    # Same group, new member: only what was not committed comes back.
    with EventConsumer(kafka_settings, [topic]) as second:
        expected = [m for m in received if m.partition != kept]
        again = drain(second, len(expected))
        assert sorted(m.value or b"" for m in again) == sorted(m.value or b"" for m in expected)
        assert quiet(second, 0.5) == []


def test_pause_stops_delivery_and_resume_restores_it(
    kafka_settings: KafkaSettings, producer: EventProducer
) -> None:
    topic = kafka_settings.orders_topic
    producer.send([Outbound(topic, b"%d" % i, key=b"one-key") for i in range(10)], timeout_s=10)

    with EventConsumer(kafka_settings, [topic]) as consumer:
        head = drain(consumer, 3)
        assert [m.value for m in head] == [b"0", b"1", b"2"]
        assert sum(consumer.lag().values()) == 7

        consumer.pause_all()
        assert consumer.paused()
        assert quiet(consumer, 1.0) == []

        consumer.resume_all()
        assert not consumer.paused()
        rest = drain(consumer, 7, timeout_s=5)
        assert [m.value for m in rest] == [b"%d" % i for i in range(3, 10)]
        consumer.commit(head + rest)
        assert sum(consumer.lag().values()) == 0


def test_two_members_split_partitions_and_take_over_on_leave(
    kafka_settings: KafkaSettings,
) -> None:
    topic = kafka_settings.orders_topic
    revoked: list[list[tuple[str, int]]] = []
    first = EventConsumer(kafka_settings, [topic], on_revoke=revoked.append).start()
    second = EventConsumer(kafka_settings, [topic])
    try:
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while len(first.assignment()) < 3 and time.monotonic() < deadline:
            first.poll_batch(10, 0.2)
        assert len(first.assignment()) == 3

        second.start()
        while time.monotonic() < deadline:
            first.poll_batch(10, 0.1)
            second.poll_batch(10, 0.1)
            if first.assignment() and second.assignment():
                break
        a, b = set(first.assignment()), set(second.assignment())
        assert a and b and not a & b and len(a | b) == 3
        assert revoked, "the first member gave its partitions up for the rebalance"

        # While paused (backpressure), the partitions it takes over must stay paused too.
        first.pause_all()
        revoked.clear()
        second.close()  # leaves the group at once: no session timeout to wait for
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while len(first.assignment()) < 3 and time.monotonic() < deadline:
            assert first.poll_batch(10, 0.2) == []
        assert len(first.assignment()) == 3
        assert revoked

        sent = [Outbound(topic, b"%d" % i, key=b"%d" % i) for i in range(12)]
        with EventProducer(kafka_settings) as producer:
            producer.send(sent, timeout_s=10)
        assert quiet(first, 0.5) == []
        first.resume_all()
        got = drain(first, 12, timeout_s=5)
        assert sorted(m.value or b"" for m in got) == sorted(m.value for m in sent)
    finally:
        second.close()
        first.close()


def test_send_to_a_stopped_broker_fails_within_the_timeout(kafka_settings: KafkaSettings) -> None:
    with EmbeddedBroker() as doomed:
        settings = kafka_settings.model_copy(update={"bootstrap_servers": doomed.bootstrap_servers})
        producer = EventProducer(settings)
        producer.send([Outbound("t", b"before")], timeout_s=10)
    try:
        started = time.monotonic()
        with pytest.raises(DependencyError, match=r"KAFKA_BOOTSTRAP_SERVERS=127\.0\.0\.1:"):
            producer.send([Outbound("t", b"after")], timeout_s=1.5)
        assert time.monotonic() - started < 1.5 + 5  # the timeout, not librdkafka's 30 s
    finally:
        started = time.monotonic()
        producer.close()
        assert time.monotonic() - started < 5


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_check_broker_names_the_setting_and_hides_the_password(
    kafka_settings: KafkaSettings,
) -> None:
    check_broker(kafka_settings, timeout_s=5)
    ensure_topics(kafka_settings, [kafka_settings.orders_topic])  # exists already: fine

    address = f"127.0.0.1:{closed_port()}"
    settings = KafkaSettings.model_validate(
        {
            "bootstrap_servers": address,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_username": "svc",
            "sasl_password": "hunter2-very-secret",
        }
    )
    started = time.monotonic()
    with pytest.raises(
        DependencyError, match=re.escape(f"KAFKA_BOOTSTRAP_SERVERS={address}")
    ) as caught:
        check_broker(settings, timeout_s=1)
    assert time.monotonic() - started < 1 + 5  # the timeout, not librdkafka's default
    assert "hunter2" not in str(caught.value)


def test_extra_config_cannot_turn_auto_commit_on(kafka_settings: KafkaSettings) -> None:
    settings = kafka_settings.model_copy(update={"extra_config": {"enable.auto.commit": True}})
    with pytest.raises(ConfigError, match=r"KAFKA_EXTRA_CONFIG may not set enable\.auto\.commit"):
        EventConsumer(settings, [settings.orders_topic])
    extra = kafka_settings.model_copy(update={"extra_config": {"no.such.property": 1}})
    with pytest.raises(ConfigError, match="invalid Kafka client configuration"):
        EventProducer(extra)


def test_held_partitions_are_read_only_once_released_and_from_where_told(
    kafka_settings: KafkaSettings, producer: EventProducer
) -> None:
    topic = kafka_settings.orders_topic
    producer.send([Outbound(topic, b"%d" % i, key=b"one-key") for i in range(10)], timeout_s=10)

    with EventConsumer(kafka_settings, [topic], hold_assigned=True) as consumer:
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while not consumer.assignment() and time.monotonic() < deadline:
            assert consumer.poll_batch(10, 0.2) == []  # held: nothing before release
        assert consumer.unverified() == consumer.assignment()
        assert quiet(consumer, 0.5) == []

        first = drain_after_release(consumer, {}, 10)
        assert [m.value for m in first] == [b"%d" % i for i in range(10)]
        consumer.commit(first)
        (partition,) = {(m.topic, m.partition) for m in first}
        assert consumer.committed([partition]) == {partition: 10}
        assert partition in consumer.committed()  # every partition of the topics

        # Held again (the ledger came back from being lost) and released at an earlier
        # offset (it is behind): the messages after it come again.
        consumer.hold(consumer.assignment())
        assert quiet(consumer, 0.3) == []
        again = drain_after_release(consumer, {partition: 6}, 4)
        assert [m.offset for m in again] == [6, 7, 8, 9]

        consumer.seek({partition: 8})
        assert [m.offset for m in drain(consumer, 2, timeout_s=5)] == [8, 9]


def drain_after_release(
    consumer: EventConsumer, seek: dict[tuple[str, int], int], want: int
) -> list[Inbound]:
    consumer.release(consumer.unverified(), seek)
    assert consumer.unverified() == []
    return drain(consumer, want, timeout_s=5)
