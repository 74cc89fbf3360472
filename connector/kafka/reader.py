"""Reading input partitions outside the consumer group: for rebuilding a lost ledger, and
for the committed offsets the ledger's positions are compared with.

Assign mode, so it joins no group and moves no committed offset.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from connector.kafka.config import (
    PERMANENT,
    Inbound,
    PartitionKey,
    client_config,
    committed_offsets,
    log,
    log_client_error,
    refused,
    to_inbound,
    translate,
)
from connector.settings import KafkaSettings

__all__ = ["PartitionReader", "ReadReport"]

_TIMEOUT_S: Final = 10.0
_BUFFERED: Final = 2_000  # messages held per partition before it is paused


@dataclass
class ReadReport:
    """What ``PartitionReader.merged`` found on its way."""

    read: dict[PartitionKey, int] = field(default_factory=dict)  # messages per partition
    # Partitions whose start retention deleted while reading: read from the new earliest.
    truncated: set[PartitionKey] = field(default_factory=set)


class PartitionReader:
    """Reads partitions of ``topics`` by offset range, as the group ``settings.group_id``
    would see them, without joining it. Used from one thread at a time."""

    def __init__(self, settings: KafkaSettings, topics: Sequence[str]) -> None:
        self._settings = settings
        self._topics = list(topics)
        config = {
            **client_config(settings),
            "group.id": settings.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            # An offset retention deleted under us is reported, never silently skipped.
            "auto.offset.reset": "error",
            "error_cb": self._on_error,
        }
        try:
            self._consumer = Consumer(config)
        except KafkaException as exc:
            raise translate(settings, "starting a reader", exc) from exc

    def partitions(self) -> list[PartitionKey]:
        """Every partition of the topics; a topic the broker does not show is an error."""
        try:
            metadata = self._consumer.list_topics(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            raise translate(self._settings, "listing partitions", exc) from exc
        missing = [t for t in self._topics if t not in metadata.topics]
        if missing:
            raise refused(
                self._settings,
                f"listing partitions of {', '.join(missing)}",
                KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART),
            )
        return sorted(
            (topic, number)
            for topic in self._topics
            for number in metadata.topics[topic].partitions
        )

    def committed(
        self, partitions: Sequence[PartitionKey] | None = None
    ) -> dict[PartitionKey, int]:
        """The group's committed offsets (next to read) for ``partitions``, or for every
        partition of the topics; partitions without one are left out."""
        if partitions is None:
            partitions = self.partitions()
        return committed_offsets(self._consumer, self._settings, partitions, _TIMEOUT_S)

    def earliest(self, partition: PartitionKey) -> int:
        """The first offset the broker still retains."""
        try:
            low, _ = self._consumer.get_watermark_offsets(
                TopicPartition(*partition), timeout=_TIMEOUT_S
            )
        except KafkaException as exc:
            raise translate(self._settings, "reading watermarks", exc) from exc
        return int(low)

    def merged(
        self,
        ranges: Mapping[PartitionKey, tuple[int, int]],
        report: ReadReport,
        *,
        batch: int = 500,
    ) -> Iterator[list[Inbound]]:
        """Every message of each partition's range ``[start, end)``, merged across the
        partitions in broker-timestamp order (as a live consumer of them all would roughly
        see them), in batches of ``batch``."""
        merge = _Merge(self._consumer, self._settings, ranges, report, self.earliest)
        try:
            yield from merge.batches(batch)
        finally:
            self._consumer.unassign()

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> PartitionReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _on_error(self, error: KafkaError) -> None:
        # Transport errors are retried by librdkafka itself (the merge waits meanwhile).
        log_client_error("reader", error, self._settings)


class _Merge:
    """The k-way merge behind ``PartitionReader.merged``: a message leaves only when every
    unfinished partition has one buffered, so none is emitted ahead of an earlier one."""

    def __init__(
        self,
        consumer: Consumer,
        settings: KafkaSettings,
        ranges: Mapping[PartitionKey, tuple[int, int]],
        report: ReadReport,
        earliest: Callable[[PartitionKey], int],
    ) -> None:
        self._consumer = consumer
        self._settings = settings
        self._ends = {p: end for p, (start, end) in ranges.items() if start < end}
        self._report = report
        self._earliest = earliest
        self._buffers: dict[PartitionKey, deque[Inbound]] = {p: deque() for p in self._ends}
        self._done: set[PartitionKey] = set()
        self._paused: set[PartitionKey] = set()
        try:
            consumer.assign(
                [TopicPartition(t, p, ranges[(t, p)][0]) for t, p in sorted(self._ends)]
            )
        except KafkaException as exc:
            raise translate(settings, "assigning partitions", exc) from exc

    def batches(self, size: int) -> Iterator[list[Inbound]]:
        out: list[Inbound] = []
        while True:
            waiting = [p for p in self._ends if p not in self._done and not self._buffers[p]]
            if waiting:
                self._fill(waiting, size)
                continue
            heads = [(b[0].timestamp_ms or 0, p) for p, b in self._buffers.items() if b]
            if not heads:
                break
            _, first = min(heads)
            out.append(self._buffers[first].popleft())
            if len(out) >= size:
                yield out
                out = []
        if out:
            yield out

    def _fill(self, waiting: list[PartitionKey], size: int) -> None:
        resume = [p for p in waiting if p in self._paused]
        if resume:
            self._consumer.resume([TopicPartition(*p) for p in resume])
            self._paused.difference_update(resume)
        try:
            messages = self._consumer.consume(num_messages=size, timeout=1.0)
        except KafkaException as exc:
            raise translate(self._settings, "reading input partitions", exc) from exc
        for message in messages:
            error = message.error()
            if error is None:
                self._take(to_inbound(message))
            else:
                self._on_error(message, error)

    def _take(self, message: Inbound) -> None:
        key = (message.topic, message.partition)
        if key in self._done or key not in self._ends:
            return
        if message.offset >= self._ends[key]:
            self._finish(key)
            return
        self._buffers[key].append(message)
        self._report.read[key] = self._report.read.get(key, 0) + 1
        if message.offset == self._ends[key] - 1:
            self._finish(key)
        elif len(self._buffers[key]) >= _BUFFERED and key not in self._paused:
            self._consumer.pause([TopicPartition(*key)])
            self._paused.add(key)

    def _on_error(self, message: Any, error: KafkaError) -> None:
        key = (str(message.topic()), int(message.partition()))
        code = error.code()
        if code == KafkaError._PARTITION_EOF:
            if key in self._ends:
                self._finish(key)
            return
        if code in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
            # Retention deleted the rest of the planned start while we read: go on from
            # what is left, and say so.
            low = self._earliest(key)
            self._report.truncated.add(key)
            log.warning("%s[%s]: offsets deleted while reading; from %s", key[0], key[1], low)
            self._consumer.seek(TopicPartition(key[0], key[1], low))
            return
        if error.fatal() or code in PERMANENT:
            raise refused(self._settings, "reading input partitions", error)
        log.warning("reader: %s", error.str())  # transient: librdkafka retries

    def _finish(self, key: PartitionKey) -> None:
        self._done.add(key)
        if key not in self._paused:
            self._consumer.pause([TopicPartition(*key)])
            self._paused.add(key)
