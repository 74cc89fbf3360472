"""The Kafka boundary: a batch consumer with manual commits, a batch producer, admin helpers.

Everything here is synchronous; the pipeline calls it through ``asyncio.to_thread``. Each
``EventConsumer`` and ``EventProducer`` must be used from one thread at a time.
``KafkaException``/``KafkaError`` never leave this module: a broker that cannot be reached, or a
broker refusal, becomes ``DependencyError`` naming ``KAFKA_BOOTSTRAP_SERVERS`` (retried);
a refusal no retry can cure (authorization, message size) or a client that hit a fatal
error becomes ``BrokerRefused`` (the connector stops); a client configuration librdkafka
rejects becomes ``ConfigError``. ``sasl_password`` is
never part of a message.

Delivery semantics (at least once; duplicates are removed downstream, by event id):

* Offsets are committed only by ``EventConsumer.commit``, synchronously, for a batch whose
  effects (ledger writes, produced results) are done. ``enable.auto.commit`` and
  ``enable.auto.offset.store`` are off and ``KAFKA_EXTRA_CONFIG`` cannot turn them on.
* ``EventProducer.send`` returns only once every message is acknowledged by all in-sync
  replicas; otherwise it raises, and the caller must not commit the batch.
* Rebalances: the pipeline commits each processed batch before it polls again, and
  ``on_revoke`` fires only inside ``poll_batch`` (librdkafka serves rebalance callbacks
  from ``consume()``). So when partitions are revoked nothing processed is uncommitted. Messages
  of a partition revoked during a ``poll_batch`` call are dropped from its result (the new
  owner reads them from the committed offset); if the same partition was assigned back
  within that call, the consumer also seeks back to the first dropped offset, so nothing is
  skipped. ``commit`` leaves out partitions that are no longer assigned, and a commit
  refused because the group is rebalancing is logged, not raised: those messages will be
  delivered again, which the de-duplication absorbs.
* Partition assignment is eager ``roundrobin``: it pools the partitions of both input
  topics, so N replicas share them evenly (``range`` assigns per topic, and with two
  one-partition topics it gives both to one member and leaves the other idle, and not
  ready). ``cooperative-sticky`` works on Tansu too, but a new member waited about 11 s
  for its partitions (three rebalance rounds) against about 4 s eager; the
  commit-before-poll rule above keeps the eager stop-the-world pause short.
  ``KAFKA_EXTRA_CONFIG`` may set ``partition.assignment.strategy``; both protocols are
  handled.
* ``pause_all`` survives rebalances: partitions assigned while paused are paused at once.

Kafka transactions are deliberately not used: on Tansu, the broker of the demo and the tests,
aborted records reached ``read_committed`` consumers and committed ones went missing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from connector.errors import BrokerRefused, ConfigError, ConnectorError, DependencyError, redact
from connector.settings import KafkaSettings

__all__ = [
    "EventConsumer",
    "EventProducer",
    "Inbound",
    "Outbound",
    "PartitionsCallback",
    "check_broker",
    "client_config",
    "ensure_topics",
]

_LOG: Final = logging.getLogger(__name__)

PartitionKey = tuple[str, int]
PartitionsCallback = Callable[[list[PartitionKey]], None]

_ASSIGNMENT_STRATEGY: Final = "roundrobin"
# Properties the delivery guarantee depends on: KAFKA_EXTRA_CONFIG may not change them.
_CONSUMER_PINNED: Final[dict[str, Any]] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
}
_PRODUCER_PINNED: Final[dict[str, Any]] = {"enable.idempotence": True, "acks": "all"}
_PRODUCER_DEFAULTS: Final[dict[str, Any]] = {
    # A few milliseconds of batching: send() flushes at once anyway, so this only groups
    # the messages of one call into fewer requests.
    "linger.ms": 5,
    # lz4: the cheapest codec on CPU, and the connector shares two cores with the broker.
    "compression.type": "lz4",
}
# Refusals that a retry from the same process cannot cure: the connector stops instead of
# spinning on them (a restart gets fresh clients; a missing ACL needs an operator).
_PERMANENT: Final = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.MSG_SIZE_TOO_LARGE,
    }
)
# Commit refusals that mean "the group moved on": the new owner re-reads from the last
# committed offset, so the batch is redelivered, not lost.
_REBALANCE_CODES: Final = frozenset(
    {
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError._STATE,
        KafkaError._ASSIGNMENT_LOST,
    }
)
_BUFFER_FULL_WAIT_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class Inbound:
    """One consumed message; a header without a value is given as ``b""``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message to produce; the partition follows from ``key``."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()


def client_config(settings: KafkaSettings) -> dict[str, Any]:
    """librdkafka properties shared by every client: address, security, then extras on top."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "security.protocol": settings.security_protocol.lower(),
    }
    if settings.sasl_mechanism is not None:
        config["sasl.mechanism"] = settings.sasl_mechanism
    if settings.sasl_username is not None:
        config["sasl.username"] = settings.sasl_username
    if settings.sasl_password is not None:
        config["sasl.password"] = settings.sasl_password.get_secret_value()
    if settings.ssl_ca_location is not None:
        config["ssl.ca.location"] = settings.ssl_ca_location
    config.update(settings.extra_config)
    return config


def _with_pinned(
    settings: KafkaSettings, defaults: dict[str, Any], pinned: dict[str, Any]
) -> dict[str, Any]:
    clashes = sorted(k for k, v in settings.extra_config.items() if k in pinned and v != pinned[k])
    if clashes:
        raise ConfigError(
            f"KAFKA_EXTRA_CONFIG may not set {', '.join(clashes)}: "
            "the connector's delivery guarantee depends on it"
        )
    # Route librdkafka's own log lines into logging instead of raw stderr.
    return {**defaults, **client_config(settings), **pinned, "logger": _LOG}


def _secrets(settings: KafkaSettings) -> list[str | None]:
    password = settings.sasl_password
    return [password.get_secret_value() if password is not None else None]


def _unreachable(settings: KafkaSettings, doing: str, reason: object) -> DependencyError:
    text = redact(str(reason), _secrets(settings))
    return DependencyError(
        f"{doing}: cannot reach the broker at "
        f"KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers} ({text}); "
        "check the address, that the broker is running and the KAFKA_SECURITY_* settings"
    )


def _refused(settings: KafkaSettings, doing: str, error: KafkaError) -> ConnectorError:
    """A Kafka error: local ones (negative codes) mean the broker is out of reach; those
    no retry can cure end the process (see ``BrokerRefused``)."""
    text = redact(error.str(), _secrets(settings))
    if error.fatal() or error.code() in _PERMANENT:
        return BrokerRefused(
            f"{doing}: the broker at KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers} "
            f"refused: {error.name()} ({text}); retrying cannot help: check the topics' ACLs "
            "for this client, the broker's message size limits, or restart after a fatal error"
        )
    if error.code() < 0:
        return _unreachable(settings, doing, error.str())
    return DependencyError(
        f"{doing}: the broker at KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers} "
        f"refused: {error.name()} ({text})"
    )


def _kafka_error(exc: KafkaException) -> KafkaError | None:
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, KafkaError) else None


def _translate(settings: KafkaSettings, doing: str, exc: KafkaException) -> Exception:
    """The one place a KafkaException becomes one of ours."""
    error = _kafka_error(exc)
    if error is None:
        return _unreachable(settings, doing, exc)
    if error.code() == KafkaError._INVALID_ARG:
        text = redact(error.str(), _secrets(settings))
        return ConfigError(f"{doing}: invalid Kafka client configuration ({text}); check KAFKA_*")
    return _refused(settings, doing, error)


def _log_client_error(client: str, error: KafkaError, settings: KafkaSettings) -> None:
    # librdkafka's own log (routed to _LOG) already reports each connection failure; here
    # only what changes the client's state is worth a warning.
    important = error.fatal() or error.code() == KafkaError._ALL_BROKERS_DOWN
    level = logging.WARNING if important else logging.DEBUG
    _LOG.log(level, "kafka %s: %s", client, redact(error.str(), _secrets(settings)))


def _keys(partitions: Sequence[TopicPartition]) -> list[PartitionKey]:
    return [(str(tp.topic), int(tp.partition)) for tp in partitions]


def _header(value: str | bytes | None) -> bytes:
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else value


def _inbound(message: Message) -> Inbound:
    ts_type, ts = message.timestamp()
    raw = message.headers() or []
    headers = raw.items() if isinstance(raw, dict) else raw
    return Inbound(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        key=message.key(),
        value=message.value(),
        headers=tuple((name, _header(value)) for name, value in headers),
        timestamp_ms=None if ts_type == 0 else ts,  # 0 is TIMESTAMP_NOT_AVAILABLE
    )


class EventConsumer:
    """A group member reading ``topics`` in batches and committing only what it is told."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        *,
        on_revoke: PartitionsCallback | None = None,
        on_assign: PartitionsCallback | None = None,
    ) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._user_on_revoke = on_revoke
        self._user_on_assign = on_assign
        defaults = {
            "group.id": settings.group_id,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": settings.session_timeout_ms,
            # A member learns of a rebalance only on its next heartbeat: keep it short so
            # the others wait less. Kafka asks for at most a third of the session timeout.
            "heartbeat.interval.ms": max(100, min(3_000, settings.session_timeout_ms // 6)),
            "partition.assignment.strategy": _ASSIGNMENT_STRATEGY,
        }
        self._config = _with_pinned(settings, defaults, _CONSUMER_PINNED)
        strategy = str(self._config["partition.assignment.strategy"])
        self._cooperative = "cooperative" in strategy
        self._consumer: Consumer | None = None
        self._closed = False
        self._assigned: set[PartitionKey] = set()
        self._revoked_in_poll: set[PartitionKey] = set()
        self._committed: dict[PartitionKey, int] = {}
        self._paused = False
        self._fatal: KafkaError | None = None

    def start(self) -> EventConsumer:
        """Create the client and subscribe; the group join itself happens while polling."""
        if self._consumer is not None:
            return self
        config = {**self._config, "error_cb": self._on_error}
        try:
            consumer = Consumer(config)
            consumer.subscribe(self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        except KafkaException as exc:
            raise _translate(self._settings, "starting the consumer", exc) from exc
        self._consumer = consumer
        return self

    subscribe = start

    def poll_batch(self, max_events: int, timeout_s: float) -> list[Inbound]:
        """Up to ``max_events`` messages, waiting at most ``timeout_s`` for the first ones."""
        consumer = self._started()
        self._revoked_in_poll.clear()
        try:
            messages = consumer.consume(num_messages=max_events, timeout=timeout_s)
        except KafkaException as exc:
            raise _translate(self._settings, "consuming", exc) from exc
        self._raise_if_fatal()
        batch: list[Inbound] = []
        rewind: dict[PartitionKey, int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_message_error(error)
                continue
            event = _inbound(message)
            key = (event.topic, event.partition)
            if key in self._revoked_in_poll or key not in self._assigned:
                if key in self._assigned:  # revoked and assigned back within this call
                    rewind[key] = min(rewind.get(key, event.offset), event.offset)
                continue
            batch.append(event)
        self._rewind(consumer, rewind)
        return batch

    def commit(self, batch: Sequence[Inbound]) -> None:
        """Commit, synchronously, the offset after each partition's last message in ``batch``."""
        offsets: dict[PartitionKey, int] = {}
        for event in batch:
            key = (event.topic, event.partition)
            offsets[key] = max(offsets.get(key, 0), event.offset + 1)
        # A revoked partition belongs to another member now; committing it could move that
        # member's position.
        owned = {key: offset for key, offset in offsets.items() if key in self._assigned}
        if not owned:
            return
        consumer = self._started()
        partitions = [TopicPartition(t, p, o) for (t, p), o in sorted(owned.items())]
        try:
            result = consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            self._on_commit_error(exc)
            return
        refused = [tp for tp in result or () if tp.error is not None]
        if refused:
            self._on_commit_error(KafkaException(refused[0].error))
            return
        self._committed.update(owned)

    def pause_all(self) -> None:
        """Stop fetching from every assigned partition (backpressure); keep polling to stay in
        the group."""
        self._paused = True
        consumer = self._started()
        consumer.pause(consumer.assignment())

    def resume_all(self) -> None:
        self._paused = False
        consumer = self._started()
        consumer.resume(consumer.assignment())

    def paused(self) -> bool:
        return self._paused

    def assignment(self) -> list[PartitionKey]:
        return sorted(self._assigned)

    def lag(self) -> dict[PartitionKey, int]:
        """Messages behind the high watermark per assigned partition, from cached values.

        A partition is left out until both its high watermark (known after a fetch) and this
        member's position (after a message or a commit) are known.
        """
        consumer = self._started()
        lags: dict[PartitionKey, int] = {}
        try:
            positions = consumer.position([TopicPartition(t, p) for t, p in self.assignment()])
            for tp in positions:
                key = (tp.topic, tp.partition)
                position = tp.offset if tp.offset >= 0 else self._committed.get(key)
                watermarks = consumer.get_watermark_offsets(tp, cached=True)
                if position is None or watermarks is None or watermarks[1] < 0:
                    continue
                lags[key] = max(0, watermarks[1] - position)
        except KafkaException as exc:
            _LOG.debug("lag unavailable: %s", _kafka_error(exc))
        return lags

    def close(self) -> None:
        """Leave the group at once (partitions move without waiting for the session timeout)."""
        if self._consumer is None or self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()
        except KafkaException as exc:
            _LOG.warning("closing the consumer: %s", _kafka_error(exc))

    def __enter__(self) -> EventConsumer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _started(self) -> Consumer:
        if self._consumer is None or self._closed:
            raise RuntimeError("the consumer is not started (call start()) or already closed")
        return self._consumer

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._paused:
            # A rebalance forgets pause state; backpressure must hold for new partitions too.
            # Assigning here (instead of after this callback) lets us pause before any fetch.
            if self._cooperative:
                consumer.incremental_assign(partitions)
            else:
                consumer.assign(partitions)
            consumer.pause(partitions)
        keys = _keys(partitions)
        self._assigned.update(keys)
        if self._user_on_assign is not None:
            self._user_on_assign(keys)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = _keys(partitions)
        self._assigned.difference_update(keys)
        self._revoked_in_poll.update(keys)
        for key in keys:
            self._committed.pop(key, None)
        if self._user_on_revoke is not None:
            self._user_on_revoke(keys)

    def _on_error(self, error: KafkaError) -> None:
        # Transport errors are retried by librdkafka itself; only a fatal one ends the client.
        if error.fatal():
            self._fatal = error
        _log_client_error("consumer", error, self._settings)

    def _on_message_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            self._fatal = error
            self._raise_if_fatal()
        if error.code() in _PERMANENT:  # e.g. no read ACL on an input topic
            raise _refused(self._settings, "consuming", error)
        _LOG.warning("kafka consumer: %s", redact(error.str(), _secrets(self._settings)))

    def _on_commit_error(self, exc: KafkaException) -> None:
        error = _kafka_error(exc)
        if error is not None and error.code() in _REBALANCE_CODES:
            _LOG.warning("commit refused during a rebalance, batch will be redelivered: %s", error)
            return
        raise _translate(self._settings, "committing offsets", exc) from exc

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise _refused(self._settings, "the consumer failed fatally", self._fatal)

    def _rewind(self, consumer: Consumer, rewind: dict[PartitionKey, int]) -> None:
        for (topic, partition), offset in rewind.items():
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # Going on could commit past the dropped messages and skip them: stop instead,
                # uncommitted, so the restart re-reads from the committed offset.
                raise BrokerRefused(
                    f"could not rewind {topic}[{partition}] to offset {offset} after a "
                    f"rebalance ({_kafka_error(exc)}): stopping so that nothing is skipped"
                ) from exc


class EventProducer:
    """An idempotent producer whose ``send`` returns only when every message is acknowledged."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._fatal: KafkaError | None = None
        config = {
            **_with_pinned(settings, _PRODUCER_DEFAULTS, _PRODUCER_PINNED),
            "error_cb": self._on_error,
        }
        try:
            self._producer = Producer(config)
        except KafkaException as exc:
            raise _translate(settings, "starting the producer", exc) from exc
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
        if self._closed:
            raise RuntimeError("the producer is closed")
        deadline = time.monotonic() + timeout_s
        failures: list[KafkaError] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error)

        for message in messages:
            self._produce(message, delivered, deadline)
        try:
            remaining = self._producer.flush(max(0.0, deadline - time.monotonic()))
        except KafkaException as exc:
            raise _translate(self._settings, "producing", exc) from exc
        self._raise_if_fatal()
        if remaining:
            self._drop_queued()
            raise _unreachable(
                self._settings,
                f"{remaining} of {len(messages)} messages unacknowledged after {timeout_s:g} s",
                "delivery timed out",
            )
        if failures:
            raise _refused(
                self._settings,
                f"{len(failures)} of {len(messages)} messages not delivered",
                failures[0],
            )

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

    def _produce(
        self,
        message: Outbound,
        delivered: Callable[[KafkaError | None, Message], None],
        deadline: float,
    ) -> None:
        while True:
            try:
                self._producer.produce(
                    message.topic,
                    value=message.value,
                    key=message.key,
                    headers=list(message.headers) or None,
                    on_delivery=delivered,
                )
            except BufferError:
                # The local queue is full: serve delivery reports to make room, within the deadline.
                if time.monotonic() >= deadline:
                    self._drop_queued()
                    raise _unreachable(
                        self._settings, "producing", "local queue stayed full"
                    ) from None
                self._producer.poll(_BUFFER_FULL_WAIT_S)
            except KafkaException as exc:
                raise _translate(self._settings, f"producing to {message.topic}", exc) from exc
            else:
                return

    def _drop_queued(self, *, in_flight: bool = False) -> None:
        # After a failed send the caller re-sends the batch; without this the old copies
        # would still go out later, behind the new ones.
        try:
            self._producer.purge(in_queue=True, in_flight=in_flight, blocking=True)
            self._producer.poll(0)
        except KafkaException as exc:
            _LOG.warning("purging the producer queue: %s", _kafka_error(exc))

    def _on_error(self, error: KafkaError) -> None:
        # An idempotent producer that hits a fatal error (a sequence gap, fencing) cannot
        # continue: the next send must fail instead of silently dropping messages.
        if error.fatal():
            self._fatal = error
        _log_client_error("producer", error, self._settings)

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise _refused(self._settings, "the producer failed fatally", self._fatal)


def _admin(settings: KafkaSettings) -> AdminClient:
    try:
        config: dict[str, Any] = {**client_config(settings), "logger": _LOG}
        return AdminClient(config)
    except KafkaException as exc:
        raise _translate(settings, "starting the admin client", exc) from exc


def _topic_names(admin: AdminClient, settings: KafkaSettings, timeout_s: float) -> set[str]:
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise _translate(settings, "listing topics", exc) from exc
    return {name for name, topic in metadata.topics.items() if topic.error is None}


def check_broker(settings: KafkaSettings, *, timeout_s: float = 5) -> None:
    """Raise ``DependencyError`` unless the broker answers a metadata request in time."""
    _topic_names(_admin(settings), settings, timeout_s)


def ensure_topics(
    settings: KafkaSettings, topics: Sequence[str], *, partitions: int = 3, timeout_s: float = 10
) -> None:
    """Create the topics in ``topics`` that do not exist yet (replication: broker default)."""
    admin = _admin(settings)
    # Create only what is missing: a principal allowed to use the topics is not always
    # allowed to create them, even ones that already exist.
    missing = sorted(set(topics) - _topic_names(admin, settings, timeout_s))
    if not missing:
        return
    new = [NewTopic(name, num_partitions=partitions, replication_factor=-1) for name in missing]
    futures = admin.create_topics(new, request_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            error = _kafka_error(exc)
            if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise _translate(settings, f"creating topic {name}", exc) from exc
        except FutureTimeout as exc:
            raise _unreachable(settings, f"creating topic {name}", "timed out") from exc
