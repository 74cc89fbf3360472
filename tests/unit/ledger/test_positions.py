"""The decisions on the ledger's positions against Kafka's committed offsets (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connector.ledger.positions import (
    Marker,
    Opening,
    behind,
    field_of,
    opening,
    partition_of,
    resumes,
    rewinds,
)

ORDERS0, ORDERS1 = ("orders", 0), ("orders", 1)


def test_a_first_start_creates_the_ledger() -> None:
    assert opening(Marker(None), {}) is Opening.NEW
    # Data without committed offsets is still a first start of the group.
    assert opening(Marker(None, has_data=True), {}) is Opening.NEW


def test_a_marker_opens_whatever_kafka_says() -> None:
    assert opening(Marker("id"), {ORDERS0: 10}) is Opening.OPEN
    assert opening(Marker("id"), {}) is Opening.OPEN


def test_committed_offsets_without_a_ledger_mean_it_is_lost() -> None:
    assert opening(Marker(None), {ORDERS0: 10}) is Opening.LOST


def test_a_ledger_from_before_markers_is_adopted() -> None:
    assert opening(Marker(None, has_data=True), {ORDERS0: 10}) is Opening.ADOPT


def test_a_partition_committed_past_the_ledger_is_read_from_after_its_position() -> None:
    positions = {ORDERS0: 41, ORDERS1: 99}
    committed = {ORDERS0: 60, ORDERS1: 100}
    assert rewinds(positions, committed, [ORDERS0, ORDERS1]) == {ORDERS0: 42}


def test_a_partition_the_ledger_holds_none_of_is_read_from_the_start() -> None:
    assert rewinds({}, {ORDERS0: 7}, [ORDERS0]) == {ORDERS0: 0}


def test_nothing_committed_or_a_ledger_ahead_needs_no_rewind() -> None:
    # Ahead is normal: the ledger applies before the commit, and a rebalance can come
    # between the two.
    assert rewinds({ORDERS0: 80}, {ORDERS0: 50}, [ORDERS0]) == {}
    assert rewinds({ORDERS0: 80}, {}, [ORDERS0]) == {}


def test_without_a_committed_offset_a_partition_resumes_after_its_reported_outputs() -> None:
    assert resumes({ORDERS0: 30}, {}, [ORDERS0, ORDERS1]) == {ORDERS0: 31}
    assert resumes({ORDERS0: 30}, {ORDERS0: 10}, [ORDERS0]) == {}  # committed: Kafka's word
    assert resumes({}, {}, [ORDERS0]) == {}  # never reported: the reset policy (earliest)


def test_a_position_below_what_was_seen_is_behind() -> None:
    assert behind({ORDERS0: 40, ORDERS1: 9}, {ORDERS0: 50, ORDERS1: 9}) == {ORDERS0: 40}
    assert behind({}, {ORDERS0: 3}) == {ORDERS0: -1}
    assert behind({ORDERS0: 60}, {ORDERS0: 50}) == {}


@given(
    topic=st.from_regex(r"[a-zA-Z0-9._-]{1,40}", fullmatch=True),
    number=st.integers(0, 10_000),
    kind=st.sampled_from(["p", "r"]),
)
def test_a_partitions_field_reads_back(topic: str, number: int, kind: str) -> None:
    assert partition_of(field_of((topic, number), kind)) == (topic, number)


@given(
    positions=st.dictionaries(st.sampled_from([ORDERS0, ORDERS1]), st.integers(-1, 100)),
    committed=st.dictionaries(st.sampled_from([ORDERS0, ORDERS1]), st.integers(0, 101)),
)
def test_after_a_rewind_nothing_committed_is_missing_from_the_ledger(
    positions: dict[tuple[str, int], int], committed: dict[tuple[str, int], int]
) -> None:
    """Reading from the rewind offsets (else the committed ones) re-applies every offset the
    ledger lacks below the committed one, and skips nothing."""
    seek = rewinds(positions, committed, [ORDERS0, ORDERS1])
    for partition, next_offset in committed.items():
        start = seek.get(partition, next_offset)
        assert start <= positions.get(partition, -1) + 1
