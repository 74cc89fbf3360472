"""How far the ledger has applied each input partition, and what to do when Kafka disagrees.

The ledger records, in the same atomic call as the effects, the last offset it applied of
every input partition (the way a Kafka Connect sink that stores offsets in its target
does), under a marker hash that exists from the ledger's first start. Kafka's committed
offsets are written only after the ledger call, so a healthy ledger is never behind them.
When it is, Redis lost writes Kafka already counts as done (a lagging replica promoted, the
fsync window of a crashed machine, a restore from an older backup), and those events must
be read again: de-duplication makes the replay exact. When the marker itself is missing
while the group has committed offsets, the ledger is gone (a wipe, a wrong ``REDIS_URL``, a
new empty server): nothing may be applied or pushed from it.

Pure decisions here; the reads and writes are ``Ledger``'s, the seeks the ingest loop's.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "REBUILDING",
    "Marker",
    "Opening",
    "PartitionKey",
    "behind",
    "field_of",
    "opening",
    "partition_of",
    "resumes",
    "rewinds",
]

PartitionKey = tuple[str, int]
# The id a marker carries while ``taobao-connector ledger rebuild`` replays the topics: the
# ledger exists (the rebuild applies to it) but is not ready for connectors.
REBUILDING: Final = "rebuilding:"


def field_of(partition: PartitionKey, kind: str = "p") -> str:
    """The marker hash's field for a partition's position (``p``: applied; ``r``: its
    outputs produced); topic names hold no colon."""
    topic, number = partition
    return f"{kind}:{topic}:{number}"


def partition_of(name: str) -> PartitionKey:
    """The inverse of ``field_of``."""
    topic, number = name.split(":", 1)[1].rsplit(":", 1)
    return topic, int(number)


@dataclass(frozen=True, slots=True)
class Marker:
    """What Redis holds of the ledger's identity: its id (``None``: no marker), the last
    offset applied of each partition asked about, the last one whose outputs were
    produced, and whether ledger data exists."""

    ledger_id: str | None
    positions: dict[PartitionKey, int] = field(default_factory=dict)
    reported: dict[PartitionKey, int] = field(default_factory=dict)
    # The SKU index exists: a ledger written by a version before markers.
    has_data: bool = False

    @property
    def ready(self) -> bool:
        """There is a ledger and no rebuild is writing it."""
        return self.ledger_id is not None and not self.ledger_id.startswith(REBUILDING)


class Opening(enum.Enum):
    """What a starting connector does with the ledger it finds."""

    OPEN = "open"  # the marker is there: go on (each partition is checked on assignment)
    REBUILDING = "rebuilding"  # a rebuild is writing the ledger: wait for it
    NEW = "new"  # nothing anywhere: a first start, create the marker
    ADOPT = "adopt"  # data without a marker: an earlier version's ledger, take Kafka's word
    LOST = "lost"  # Kafka has committed offsets, Redis has no ledger: stop


def opening(marker: Marker, committed: Mapping[PartitionKey, int]) -> Opening:
    """Decide from the marker and the group's committed offsets, read in that order: the
    offsets first, so that a replica that finds none and then no marker cannot be racing
    one that created the marker and committed since (it creates the marker first)."""
    if marker.ledger_id is not None:
        return Opening.OPEN if marker.ready else Opening.REBUILDING
    if not committed:
        return Opening.NEW
    if marker.has_data:
        return Opening.ADOPT
    return Opening.LOST


def rewinds(
    positions: Mapping[PartitionKey, int],
    committed: Mapping[PartitionKey, int],
    partitions: Iterable[PartitionKey],
) -> dict[PartitionKey, int]:
    """Where to read each partition from whose committed offset is past what the ledger
    holds: the offset after the ledger's position (0 when it holds none of it)."""
    out: dict[PartitionKey, int] = {}
    for partition in partitions:
        next_offset = committed.get(partition)
        if next_offset is None:
            continue  # nothing committed: the consumer starts where the reset policy says
        applied = positions.get(partition, -1)
        if applied + 1 < next_offset:
            out[partition] = applied + 1
    return out


def resumes(
    reported: Mapping[PartitionKey, int],
    committed: Mapping[PartitionKey, int],
    partitions: Iterable[PartitionKey],
) -> dict[PartitionKey, int]:
    """Where to read each partition from that has no committed offset but whose outputs
    the ledger knows were produced up to some offset (the group's offsets expired, or were
    deleted): after that offset, not from the earliest retained one, which could reach
    past the de-dup TTL. (Not after the applied position: the outputs of what was applied
    after the last produced batch may never have gone out, and are reported on replay.)"""
    return {
        partition: reported[partition] + 1
        for partition in partitions
        if partition not in committed and partition in reported
    }


def behind(
    stored: Mapping[PartitionKey, int], known: Mapping[PartitionKey, int]
) -> dict[PartitionKey, int]:
    """The partitions Redis now holds less of than this process saw it hold, with what it
    holds (-1: none)."""
    return {
        partition: stored.get(partition, -1)
        for partition, seen in known.items()
        if stored.get(partition, -1) < seen
    }
