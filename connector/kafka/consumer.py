"""The batch consumer: a group member that commits only what it is told (see the package
docstring for the delivery and rebalance rules)."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from connector.errors import BrokerRefused, redact
from connector.kafka.config import (
    ASSIGNMENT_STRATEGY,
    CONSUMER_PINNED,
    PERMANENT,
    REBALANCE_CODES,
    Inbound,
    PartitionKey,
    PartitionsCallback,
    committed_offsets,
    kafka_error,
    log,
    log_client_error,
    partition_keys,
    refused,
    secrets_of,
    to_inbound,
    translate,
    with_pinned,
)
from connector.settings import KafkaSettings

__all__ = ["FETCH_WAIT_MAX_MS", "EventConsumer"]

FETCH_WAIT_MAX_MS = 50


class EventConsumer:
    """A group member reading ``topics`` in batches and committing only what it is told."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: Sequence[str],
        *,
        on_revoke: PartitionsCallback | None = None,
        on_assign: PartitionsCallback | None = None,
        hold_assigned: bool = False,
    ) -> None:
        """``hold_assigned``: hold each partition assigned paused until ``release``d (the
        ingest loop checks the ledger's position for it first)."""
        self._settings = settings
        self._hold_assigned = hold_assigned
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
            # How long the broker may hold a fetch that has too little data: Apache Kafka
            # answers as soon as one byte is there (fetch.min.bytes), but some brokers hold
            # it the whole time, which becomes input → result latency (librdkafka: 500 ms).
            "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
            "partition.assignment.strategy": ASSIGNMENT_STRATEGY,
        }
        if settings.group_instance_id is not None:
            defaults["group.instance.id"] = settings.group_instance_id
        self._config = with_pinned(settings, defaults, CONSUMER_PINNED)
        strategy = str(self._config["partition.assignment.strategy"])
        self._cooperative = "cooperative" in strategy
        self._consumer: Consumer | None = None
        self._closed = False
        self._assigned: set[PartitionKey] = set()
        self._revoked_in_poll: set[PartitionKey] = set()
        self._committed: dict[PartitionKey, int] = {}
        # Assigned, held paused until the ingest loop has compared the ledger's position
        # with the committed offset (``release``): nothing is read from them before.
        self._unverified: set[PartitionKey] = set()
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
            raise translate(self._settings, "starting the consumer", exc) from exc
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
            raise translate(self._settings, "consuming", exc) from exc
        self._raise_if_fatal()
        batch: list[Inbound] = []
        rewind: dict[PartitionKey, int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_message_error(error)
                continue
            event = to_inbound(message)
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
        """Fetch again from every assigned partition but those not yet released."""
        self._paused = False
        consumer = self._started()
        consumer.resume(
            [tp for tp in consumer.assignment() if (tp.topic, tp.partition) not in self._unverified]
        )

    def unverified(self) -> list[PartitionKey]:
        """Partitions assigned but not yet released (held paused)."""
        return sorted(self._unverified)

    def hold(self, partitions: Sequence[PartitionKey]) -> None:
        """Hold these assigned partitions again until ``release``d (after the ledger came
        back from being lost: every position is checked again)."""
        held = [key for key in partitions if key in self._assigned]
        self._unverified.update(held)
        if held:
            self._started().pause([TopicPartition(t, p) for t, p in held])

    def release(
        self, partitions: Sequence[PartitionKey], seek: dict[PartitionKey, int]
    ) -> list[PartitionKey]:
        """Start reading these held partitions: from ``seek[p]`` where given, else from the
        committed offset. Returns those still held: librdkafka refuses a seek (``_STATE``)
        until a new assignment's fetcher has started, so they are released on a later
        call."""
        consumer = self._started()
        held = [key for key in partitions if key in self._unverified]
        ready = []
        for key in held:
            if key in seek and not self._seek_new(consumer, key, seek[key]):
                continue
            ready.append(key)
        self._unverified.difference_update(ready)
        if ready and not self._paused:
            consumer.resume([TopicPartition(t, p) for t, p in ready])
        return [key for key in held if key not in ready]

    def _seek_new(self, consumer: Consumer, key: PartitionKey, offset: int) -> bool:
        try:
            consumer.seek(TopicPartition(key[0], key[1], offset))
        except KafkaException as exc:
            error = kafka_error(exc)
            if error is not None and error.code() == KafkaError._STATE:
                return False
            raise BrokerRefused(
                f"could not rewind {key[0]}[{key[1]}] to offset {offset} "
                f"({kafka_error(exc)}): stopping so that nothing is skipped"
            ) from exc
        return True

    def seek(self, offsets: dict[PartitionKey, int]) -> None:
        """Read these assigned partitions next from these offsets (a rewind)."""
        self._rewind(self._started(), {k: o for k, o in offsets.items() if k in self._assigned})

    def committed(
        self, partitions: Sequence[PartitionKey] | None = None, *, timeout_s: float = 10.0
    ) -> dict[PartitionKey, int]:
        """The group's committed offsets (next to read) for ``partitions``, or for every
        partition of the input topics; partitions without one are left out."""
        consumer = self._started()
        try:
            if partitions is None:
                metadata = consumer.list_topics(timeout=timeout_s)
                partitions = [
                    (topic, number)
                    for topic in self._topics
                    if topic in metadata.topics
                    for number in metadata.topics[topic].partitions
                ]
        except KafkaException as exc:
            raise translate(self._settings, "listing partitions", exc) from exc
        return committed_offsets(consumer, self._settings, partitions, timeout_s)

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
            log.debug("lag unavailable: %s", kafka_error(exc))
        return lags

    def close(self) -> None:
        """Leave the group at once (partitions move without waiting for the session timeout)."""
        if self._consumer is None or self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()
        except KafkaException as exc:
            log.warning("closing the consumer: %s", kafka_error(exc))

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
        # Assigned here (not after this callback) so that they are paused before any fetch:
        # each is held until the ingest loop has checked the ledger's position for it, and
        # a rebalance forgets pause state, which backpressure (pause_all) must keep.
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        keys = partition_keys(partitions)
        self._assigned.update(keys)
        if self._hold_assigned:
            self._unverified.update(keys)
        if self._hold_assigned or self._paused:
            consumer.pause(partitions)
        if self._user_on_assign is not None:
            self._user_on_assign(keys)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = partition_keys(partitions)
        self._assigned.difference_update(keys)
        self._unverified.difference_update(keys)
        self._revoked_in_poll.update(keys)
        for key in keys:
            self._committed.pop(key, None)
        if self._user_on_revoke is not None:
            self._user_on_revoke(keys)

    def _on_error(self, error: KafkaError) -> None:
        # Transport errors are retried by librdkafka itself; only a fatal one ends the client.
        if error.fatal():
            self._fatal = error
        log_client_error("consumer", error, self._settings)

    def _on_message_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            self._fatal = error
            self._raise_if_fatal()
        if error.code() in PERMANENT:  # e.g. no read ACL on an input topic
            raise refused(self._settings, "consuming", error)
        log.warning("kafka consumer: %s", redact(error.str(), secrets_of(self._settings)))

    def _on_commit_error(self, exc: KafkaException) -> None:
        error = kafka_error(exc)
        if error is not None and error.code() in REBALANCE_CODES:
            log.warning("commit refused during a rebalance, batch will be redelivered: %s", error)
            return
        raise translate(self._settings, "committing offsets", exc) from exc

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise refused(self._settings, "the consumer failed fatally", self._fatal)

    def _rewind(self, consumer: Consumer, rewind: dict[PartitionKey, int]) -> None:
        for (topic, partition), offset in rewind.items():
            try:
                consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                # Going on could commit past the dropped messages and skip them: stop instead,
                # uncommitted, so the restart re-reads from the committed offset.
                raise BrokerRefused(
                    f"could not rewind {topic}[{partition}] to offset {offset} "
                    f"({kafka_error(exc)}): stopping so that nothing is skipped"
                ) from exc
