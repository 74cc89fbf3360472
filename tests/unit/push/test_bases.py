"""Increments against push bases (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connector.ledger.outcomes import PushBase
from connector.push.bases import increments, listing_key


def test_listing_keys_match_the_order_lines() -> None:
    assert listing_key(600000000001, 700000000011) == "600000000001:700000000011"
    assert listing_key(600000000003, None) == "600000000003:"


def test_a_sku_without_a_base_makes_the_write_absolute() -> None:
    assert increments({1: 5, 2: 3}, {1: PushBase(4, 0), 2: None}) is None
    assert increments({1: 5}, {}) is None


def test_only_what_moved_is_sent() -> None:
    got = increments(
        {1: 5, 2: 3, None: 0}, {1: PushBase(4, 0), 2: PushBase(3, 0), None: PushBase(2, 0)}
    )
    assert got == {1: 1, None: -2}


@given(
    st.dictionaries(
        st.integers(1, 50), st.tuples(st.integers(0, 10**6), st.integers(-(10**6), 10**6))
    )
)
def test_base_plus_increment_is_the_target(skus: dict[int, tuple[int, int]]) -> None:
    targets = {k: t for k, (t, _) in skus.items()}
    bases = {k: PushBase(b, 0) for k, (_, b) in skus.items()}
    deltas = increments(targets, bases)
    assert deltas is not None
    assert all(bases[k].base + deltas.get(k, 0) == targets[k] for k in skus)
