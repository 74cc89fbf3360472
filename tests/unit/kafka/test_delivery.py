"""Queuing a batch in parts (``EventProducer.start``): order, a full local queue, deadlines.

The librdkafka handle is replaced by a fake, so no broker is needed; the real producer's
acknowledgement path is covered by tests/integration/kafka/test_clients.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from connector.errors import DependencyError
from connector.kafka import EventProducer, Outbound
from connector.settings import KafkaSettings


class FakeHandle:
    """librdkafka's producer: its local queue takes nothing while ``full`` > 0."""

    def __init__(self, full: int) -> None:
        self.full = full
        self.queued: list[bytes] = []
        self.polls = 0
        self.purged = False

    def produce(
        self, topic: str, *, value: bytes, on_delivery: Callable[..., None], **_: Any
    ) -> None:
        if self.full > 0:
            raise BufferError("queue full")
        self.queued.append(value)

    def poll(self, timeout: float) -> int:
        self.polls += 1
        self.full -= 1  # serving delivery reports frees room
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def purge(self, **_: Any) -> None:
        self.purged = True

    def close(self) -> None:
        pass


def producer(full: int) -> tuple[EventProducer, FakeHandle]:
    real = EventProducer(KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    real._producer.close()  # type: ignore[attr-defined]
    fake = FakeHandle(full)
    real._producer = fake  # type: ignore[assignment]
    return real, fake


def messages(*values: bytes) -> list[Outbound]:
    return [Outbound("results", v) for v in values]


def test_a_full_local_queue_defers_the_rest_in_order_to_the_wait() -> None:
    real, fake = producer(full=2)
    delivery = real.start()

    delivery.add(messages(b"1", b"2"))  # never blocks: the full queue defers both
    fake.full = 0
    delivery.add(messages(b"3"))  # room now, but it must not overtake 1 and 2
    assert fake.queued == []
    delivery.wait(timeout_s=5)

    assert fake.queued == [b"1", b"2", b"3"]
    assert fake.polls == 0


def test_waiting_serves_delivery_reports_until_the_queue_has_room() -> None:
    real, fake = producer(full=3)

    real.send(messages(b"1", b"2"), timeout_s=5)

    assert fake.queued == [b"1", b"2"]
    assert fake.polls == 3


def test_a_queue_that_stays_full_fails_the_wait_and_drops_what_was_queued() -> None:
    real, fake = producer(full=10**9)
    delivery = real.start()
    delivery.add(messages(b"1"))

    with pytest.raises(DependencyError, match="local queue stayed full"):
        delivery.wait(timeout_s=0.2)
    assert fake.purged  # a retry re-sends the batch: no old copies go out behind it
