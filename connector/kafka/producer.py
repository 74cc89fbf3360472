"""The batch producer: idempotent, and ``send`` returns only when every message is
acknowledged by all in-sync replicas.

A batch may also be produced as its parts are ready (``start``: ``Delivery.add`` queues
without blocking, ``Delivery.wait`` waits for all of it), so the broker works on the first
outputs while the rest are being made."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from connector.kafka.config import (
    BUFFER_FULL_WAIT_S,
    PRODUCER_DEFAULTS,
    PRODUCER_PINNED,
    Outbound,
    kafka_error,
    log,
    log_client_error,
    refused,
    translate,
    unreachable,
    with_pinned,
)
from connector.settings import KafkaSettings

__all__ = ["Delivery", "EventProducer"]


class EventProducer:
    """An idempotent producer whose ``send`` returns only when every message is acknowledged."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._fatal: KafkaError | None = None
        config = {
            **with_pinned(settings, PRODUCER_DEFAULTS, PRODUCER_PINNED),
            "error_cb": self._on_error,
        }
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise translate(settings, "starting the producer", exc) from exc
        self._closed = False

    def broker_reachable(self, topic: str, *, timeout_s: float = 1.0) -> bool:
        """Whether the broker answers a metadata request for ``topic`` now.

        librdkafka hides a lost broker behind reconnect attempts (polls just return
        nothing), so readiness asks explicitly: through the producer, whose handle is
        safe to use from any thread (the consumer is busy in its own), and for one topic
        rather than the whole cluster's metadata.
        """
        try:
            self._producer.list_topics(topic=topic, timeout=timeout_s)
        except KafkaException:
            return False
        return True

    def send(self, messages: Sequence[Outbound], *, timeout_s: float) -> None:
        """Produce ``messages`` and wait for all of them; raise ``DependencyError`` if any failed
        or ``timeout_s`` ran out (the caller must then not commit its input offsets)."""
        delivery = self.start()
        delivery.defer(messages)
        delivery.wait(timeout_s=timeout_s)

    def start(self) -> Delivery:
        """A batch to produce in parts: see ``Delivery``. One at a time per producer (its
        ``wait`` waits for everything queued on the producer)."""
        if self._closed:
            raise RuntimeError("the producer is closed")
        return Delivery(self)

    def close(self) -> None:
        """Release the client; messages still queued (after a failed send) are dropped."""
        if self._closed:
            return
        self._closed = True
        self._drop_queued(in_flight=True)
        self._producer.close()

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _try_produce(
        self, message: Outbound, delivered: Callable[[KafkaError | None, Message], None]
    ) -> bool:
        """Queue ``message`` if the local queue has room (never blocks)."""
        try:
            self._producer.produce(
                message.topic,
                value=message.value,
                key=message.key,
                headers=list(message.headers) or None,
                on_delivery=delivered,
            )
        except BufferError:
            return False
        except KafkaException as exc:
            raise translate(self._settings, f"producing to {message.topic}", exc) from exc
        return True

    def _produce(
        self,
        message: Outbound,
        delivered: Callable[[KafkaError | None, Message], None],
        deadline: float,
    ) -> None:
        while not self._try_produce(message, delivered):
            # The local queue is full: serve delivery reports to make room, within the deadline.
            if time.monotonic() >= deadline:
                self._drop_queued()
                raise unreachable(self._settings, "producing", "local queue stayed full")
            self._producer.poll(BUFFER_FULL_WAIT_S)

    def _drop_queued(self, *, in_flight: bool = False) -> None:
        # After a failed send the caller re-sends the batch; without this the old copies
        # would still go out later, behind the new ones.
        try:
            self._producer.purge(in_queue=True, in_flight=in_flight, blocking=True)
            self._producer.poll(0)
        except KafkaException as exc:
            log.warning("purging the producer queue: %s", kafka_error(exc))

    def _on_error(self, error: KafkaError) -> None:
        # An idempotent producer that hits a fatal error (a sequence gap, fencing) cannot
        # continue: the next send must fail instead of silently dropping messages.
        if error.fatal():
            self._fatal = error
        log_client_error("producer", error, self._settings)

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise refused(self._settings, "the producer failed fatally", self._fatal)


class Delivery:
    """One batch's messages, queued as they are ready and waited for once.

    ``add`` queues on the calling thread without blocking (an event loop may call it):
    what a full local queue cannot take, and any error, is left for ``wait``, which queues
    the rest (waiting for room), then waits for every acknowledgement and raises as
    ``EventProducer.send`` does. After ``wait`` raised, send the whole batch again with
    ``send``: this delivery is spent.
    """

    def __init__(self, producer: EventProducer) -> None:
        self._producer = producer
        self._failures: list[KafkaError] = []
        self._deferred: list[Outbound] = []
        self._error: Exception | None = None
        self._count = 0

    def _delivered(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._failures.append(error)

    def add(self, messages: Sequence[Outbound]) -> None:
        """Queue ``messages`` now, in order, as far as the local queue takes them."""
        self._count += len(messages)
        for message in messages:
            if self._deferred or self._error is not None:
                self._deferred.append(message)  # keep the order: nothing overtakes
                continue
            try:
                queued = self._producer._try_produce(message, self._delivered)
            except Exception as exc:  # raised from wait(), inside the caller's retry step
                self._error, queued = exc, False
            if not queued:
                self._deferred.append(message)

    def defer(self, messages: Sequence[Outbound]) -> None:
        """Leave ``messages`` for ``wait`` to queue (from the thread that waits)."""
        self._count += len(messages)
        self._deferred += messages

    def wait(self, *, timeout_s: float) -> None:
        """Queue what is left, wait for all of it; raise as ``EventProducer.send``."""
        producer, settings = self._producer, self._producer._settings
        if self._error is not None:
            producer._drop_queued()
            raise self._error
        deadline = time.monotonic() + timeout_s
        for message in self._deferred:
            producer._produce(message, self._delivered, deadline)
        self._deferred = []
        try:
            remaining = producer._producer.flush(max(0.0, deadline - time.monotonic()))
        except KafkaException as exc:
            raise translate(settings, "producing", exc) from exc
        producer._raise_if_fatal()
        if remaining:
            producer._drop_queued()
            raise unreachable(
                settings,
                f"{remaining} of {self._count} messages unacknowledged after {timeout_s:g} s",
                "delivery timed out",
            )
        if self._failures:
            raise refused(
                settings,
                f"{len(self._failures)} of {self._count} messages not delivered",
                self._failures[0],
            )
