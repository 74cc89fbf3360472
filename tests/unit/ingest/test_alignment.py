"""The ingest loop's side of the ledger's positions, with in-memory fakes of the consumer
and the ledger (``connector.ingest.alignment``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import pytest

from connector.contracts.records import AlertKind, StockAlert
from connector.errors import LedgerBehind, LedgerLost
from connector.ingest import alignment
from connector.ingest.alignment import Alignment
from connector.kafka import Inbound
from connector.ledger.guard import LedgerGuard
from connector.ledger.positions import Marker, PartitionKey
from connector.metrics import SyncMetrics

P0, P1 = ("orders", 0), ("orders", 1)
_T = TypeVar("_T")


class FakeConsumer:
    def __init__(self, assigned: Sequence[PartitionKey], committed: dict[PartitionKey, int]):
        self.assigned = list(assigned)
        self.held = set(assigned)
        self.offsets = committed
        self.seeks: list[dict[PartitionKey, int]] = []
        self.is_paused = False

    def assignment(self) -> list[PartitionKey]:
        return sorted(self.assigned)

    def unverified(self) -> list[PartitionKey]:
        return sorted(self.held)

    def committed(
        self, partitions: Sequence[PartitionKey] | None = None
    ) -> dict[PartitionKey, int]:
        wanted = self.assigned if partitions is None else partitions
        return {p: o for p, o in self.offsets.items() if p in wanted}

    def release(
        self, partitions: Sequence[PartitionKey], seek: dict[PartitionKey, int]
    ) -> list[PartitionKey]:
        self.held.difference_update(partitions)
        if seek:
            self.seeks.append(seek)
        return []

    def hold(self, partitions: Sequence[PartitionKey]) -> None:
        self.held.update(partitions)

    def seek(self, offsets: dict[PartitionKey, int]) -> None:
        self.seeks.append(offsets)

    def pause_all(self) -> None:
        self.is_paused = True

    def resume_all(self) -> None:
        self.is_paused = False

    def paused(self) -> bool:
        return self.is_paused

    def poll_batch(self, max_events: int, timeout_s: float) -> list[Inbound]:
        return []


class FakeLedger:
    def __init__(self, ledger_id: str | None, positions: dict[PartitionKey, int], data: bool):
        self.ledger_id, self.positions, self.data = ledger_id, positions, data
        self.reported: dict[PartitionKey, int] = {}
        self.created: list[dict[PartitionKey, int]] = []
        self.known_positions: dict[PartitionKey, int] = {}
        self.bases_forgotten = 0

    async def forget_push_bases(self) -> int:
        self.bases_forgotten += 1
        return 0

    async def marker(self, partitions: Iterable[PartitionKey] = ()) -> Marker:
        wanted = set(partitions)
        found = {p: o for p, o in self.positions.items() if p in wanted}
        reported = {p: o for p, o in self.reported.items() if p in wanted}
        return Marker(self.ledger_id, found, reported, self.data)

    async def create_marker(self, positions: Mapping[PartitionKey, int] | None = None) -> str:
        self.created.append(dict(positions or {}))
        self.ledger_id = self.ledger_id or "new"
        return self.ledger_id

    def know(self, positions: Mapping[PartitionKey, int]) -> None:
        self.known_positions.update(positions)

    def known(self) -> dict[PartitionKey, int]:
        return dict(self.known_positions)


class Rig:
    def __init__(
        self,
        *,
        ledger_id: str | None = "L1",
        positions: dict[PartitionKey, int] | None = None,
        committed: dict[PartitionKey, int] | None = None,
        data: bool = False,
    ) -> None:
        self.consumer = FakeConsumer([P0, P1], committed or {})
        self.ledger = FakeLedger(ledger_id, positions or {}, data)
        self.guard = LedgerGuard()
        self.alerts: list[StockAlert] = []
        self.align = Alignment(
            consumer=self.consumer,  # type: ignore[arg-type]
            offsets=self.consumer,
            ledger=self.ledger,  # type: ignore[arg-type]
            guard=self.guard,
            retrying=self._retrying,
            send_alert=self._send,
            metrics=SyncMetrics.create(),
            clock_ms=lambda: 1_000,
        )

    @staticmethod
    async def _retrying(step: str, action: Callable[[], Awaitable[_T]]) -> _T:
        return await action()

    async def _send(self, alert: StockAlert) -> None:
        self.alerts.append(alert)

    def kinds(self) -> list[AlertKind]:
        return [a.kind for a in self.alerts]


def message(partition: PartitionKey, offset: int) -> Inbound:
    return Inbound(partition[0], partition[1], offset, None, b"", (), None)


async def test_a_first_start_creates_the_marker() -> None:
    rig = Rig(ledger_id=None)
    await rig.align.open()
    assert rig.ledger.created == [{}]
    assert not rig.guard.lost


async def test_an_earlier_versions_ledger_takes_the_committed_offsets() -> None:
    rig = Rig(ledger_id=None, data=True, committed={P0: 10, P1: 3})
    await rig.align.open()
    assert rig.ledger.created == [{P0: 9, P1: 2}]


async def test_committed_offsets_and_no_ledger_stop_everything_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig(ledger_id=None, committed={P0: 10})
    await rig.align.open()
    assert rig.guard.lost and rig.consumer.is_paused
    assert rig.ledger.created == []  # never an empty ledger taken for the real one
    assert rig.kinds() == [AlertKind.LEDGER_LOST]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "LEDGER_LOST" in errors[0].getMessage()
    await rig.align.lose("again")  # found again: no second alert or line
    assert rig.kinds() == [AlertKind.LEDGER_LOST]


async def test_an_assigned_partition_the_ledger_is_behind_on_is_read_again() -> None:
    rig = Rig(positions={P0: 41, P1: 99}, committed={P0: 60, P1: 100})
    await rig.align.verify_assigned()
    assert rig.consumer.seeks == [{P0: 42}]
    assert rig.consumer.held == set()
    assert rig.ledger.known_positions == {P0: 41, P1: 99}
    assert rig.kinds() == [AlertKind.LEDGER_BEHIND]
    assert "orders[0]" in rig.alerts[0].details


async def test_a_partition_with_no_committed_offset_starts_after_its_reported_outputs() -> None:
    # The group's offsets expired: reading from the earliest retained offset could reach
    # past the de-dup TTL and apply old events twice.
    rig = Rig(positions={P0: 41}, committed={})
    rig.ledger.reported = {P0: 30}
    await rig.align.verify_assigned()
    # After what was reported, not after what was applied: 31..41 may never have had their
    # results produced (a crash before the first commit), and are reported on replay.
    assert rig.consumer.seeks == [{P0: 31}]
    assert rig.alerts == []


async def test_an_assigned_partition_the_ledger_is_level_with_starts_where_committed() -> None:
    rig = Rig(positions={P0: 59}, committed={P0: 60})
    await rig.align.verify_assigned()
    assert rig.consumer.seeks == []
    assert rig.consumer.held == set()
    assert rig.ledger.known_positions == {P0: 59, P1: -1}
    assert rig.alerts == []


async def test_a_batch_refused_as_behind_is_read_again_from_the_earlier_offset() -> None:
    rig = Rig()
    batch = [message(P0, 100), message(P0, 101), message(P1, 7)]
    await rig.align.refused(LedgerBehind({P0: 80}), batch)
    assert rig.consumer.seeks == [{P0: 81, P1: 7}]
    assert rig.ledger.known_positions == {P0: 80}
    assert rig.kinds() == [AlertKind.LEDGER_BEHIND]


async def test_a_batch_refused_as_lost_is_kept_for_later() -> None:
    rig = Rig()
    await rig.align.refused(LedgerLost("gone"), [message(P0, 5), message(P1, 2)])
    assert rig.consumer.seeks == [{P0: 5, P1: 2}]  # nothing skipped once it is back
    assert rig.guard.lost


async def test_the_periodic_check_finds_positions_that_went_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alignment, "POSITION_CHECK_S", 0.0)
    rig = Rig(positions={P0: 30})
    rig.consumer.held.clear()  # both released: being read
    rig.ledger.know({P0: 50, ("orders", 9): 70})  # (partition 9 went to another replica)
    await rig.align.check()
    assert rig.consumer.seeks == [{P0: 31}]
    assert rig.ledger.bases_forgotten == 1  # the increments sent since are not replayed
    rig.ledger.ledger_id = None
    await rig.align.check()
    assert rig.guard.lost


async def test_when_the_marker_is_back_every_partition_is_checked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alignment, "LOST_CHECK_S", 0.0)
    rig = Rig(ledger_id=None, committed={P0: 10})
    await rig.align.open()
    rig.consumer.held.clear()
    stop = asyncio.Event()

    await rig.align.wait_restored(stop)
    assert rig.guard.lost  # still no marker

    rig.ledger.ledger_id = "restored"
    await rig.align.wait_restored(stop)
    assert not rig.guard.lost and not rig.consumer.is_paused
    # Every partition was checked again (and released) before the guard let go.
    assert rig.consumer.held == set()
    assert rig.consumer.seeks == [{P0: 0}]  # (the marker came back holding none of P0)


async def test_a_ledger_the_projection_found_lost_pauses_ingest_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alignment, "LOST_CHECK_S", 0.0)
    rig = Rig(ledger_id=None)
    rig.guard.lose("found by the projection", now_ms=1)
    await rig.align.wait_restored(asyncio.Event())
    assert rig.consumer.is_paused


async def test_stop_ends_the_wait_for_the_ledger() -> None:
    rig = Rig(ledger_id=None, committed={P0: 1})
    await rig.align.open()
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(rig.align.wait_restored(stop), timeout=1)
    assert rig.guard.lost
