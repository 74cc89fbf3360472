"""Reading input partitions outside the consumer group: for rebuilding a lost ledger.

Assign mode, so it joins no group and moves no committed offset; it only reads the group's
committed offsets (what the group had processed) and the partitions' retained ranges.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import TracebackType

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from connector.kafka.config import (
    Inbound,
    PartitionKey,
    client_config,
    refused,
    to_inbound,
    translate,
)
from connector.settings import KafkaSettings

__all__ = ["PartitionReader"]

_TIMEOUT_S = 10.0


class PartitionReader:
    """Reads partitions of ``topics`` by offset range, as the group ``settings.group_id``
    would see them, without joining it."""

    def __init__(self, settings: KafkaSettings, topics: Sequence[str]) -> None:
        self._settings = settings
        self._topics = list(topics)
        config = {
            **client_config(settings),
            "group.id": settings.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
        }
        try:
            self._consumer = Consumer(config)
        except KafkaException as exc:
            raise translate(settings, "starting a reader", exc) from exc

    def partitions(self) -> list[PartitionKey]:
        try:
            metadata = self._consumer.list_topics(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            raise translate(self._settings, "listing partitions", exc) from exc
        return sorted(
            (topic, number)
            for topic in self._topics
            if topic in metadata.topics
            for number in metadata.topics[topic].partitions
        )

    def committed(
        self, partitions: Sequence[PartitionKey] | None = None
    ) -> dict[PartitionKey, int]:
        """The group's committed offsets (next to read) for ``partitions``, or for every
        partition of the topics; partitions without one are left out."""
        if partitions is None:
            partitions = self.partitions()
        try:
            found = self._consumer.committed(
                [TopicPartition(t, p) for t, p in partitions], timeout=_TIMEOUT_S
            )
        except KafkaException as exc:
            raise translate(self._settings, "reading committed offsets", exc) from exc
        failed = [tp.error for tp in found if tp.error is not None]
        if failed:
            raise refused(self._settings, "reading committed offsets", failed[0])
        return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}

    def earliest(self, partition: PartitionKey) -> int:
        """The first offset the broker still retains."""
        try:
            low, _ = self._consumer.get_watermark_offsets(
                TopicPartition(*partition), timeout=_TIMEOUT_S
            )
        except KafkaException as exc:
            raise translate(self._settings, "reading watermarks", exc) from exc
        return int(low)

    def read(
        self, partition: PartitionKey, start: int, end: int, *, batch: int = 500
    ) -> Iterator[list[Inbound]]:
        """Messages of ``partition`` from ``start`` up to (not including) ``end``, in
        batches; stops early at the partition's end."""
        try:
            self._consumer.assign([TopicPartition(partition[0], partition[1], start)])
        except KafkaException as exc:
            raise translate(self._settings, "assigning a partition", exc) from exc
        try:
            while True:
                found, at_end = self._next(partition, end, batch)
                if found:
                    yield found
                if at_end:
                    return
        finally:
            self._consumer.unassign()

    def _next(self, partition: PartitionKey, end: int, batch: int) -> tuple[list[Inbound], bool]:
        doing = f"reading {partition[0]}[{partition[1]}]"
        try:
            messages = self._consumer.consume(num_messages=batch, timeout=1.0)
        except KafkaException as exc:
            raise translate(self._settings, doing, exc) from exc
        found: list[Inbound] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return found, True
                raise refused(self._settings, doing, error)
            inbound = to_inbound(message)
            if inbound.offset >= end:
                return found, True
            found.append(inbound)
        return found, bool(found) and found[-1].offset >= end - 1

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
