"""The item planner: which Taobao calls, in which order, for a shelf state and targets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.push.planner import Delist, ItemView, Relist, SetStock, plan_item, target


def view(*, on_sale: bool, ours: bool = False, has_skus: bool = True, **q: int) -> ItemView:
    quantities: dict[int | None, int] = (
        {int(k[1:]): v for k, v in q.items()} if has_skus else {None: q.get("n", 0)}
    )
    return ItemView(1, on_sale, ours, quantities, has_skus)


@pytest.mark.parametrize(
    ("available", "safety", "expected"), [(10, 0, 10), (10, 3, 7), (2, 3, 0), (-4, 0, 0)]
)
def test_target_is_never_below_zero(available: int, safety: int, expected: int) -> None:
    assert target(available, safety) == expected


def test_an_on_sale_item_reaching_zero_is_delisted_first() -> None:
    plan = plan_item(view(on_sale=True, s1=3, s2=0), {1: 0})

    assert plan.actions == (Delist(), SetStock({1: 0}))
    assert plan.total == 0


def test_other_skus_keep_an_item_on_sale() -> None:
    plan = plan_item(view(on_sale=True, s1=3, s2=4), {1: 0})

    assert plan.actions == (SetStock({1: 0}),)
    assert plan.total == 4


def test_what_the_connector_delisted_is_relisted_with_the_new_total() -> None:
    plan = plan_item(view(on_sale=False, ours=True, s1=0, s2=2), {1: 5})

    assert plan.actions == (SetStock({1: 5}), Relist(7))
    assert not plan.hand_delisted


def test_an_item_without_skus_is_relisted_in_one_call() -> None:
    plan = plan_item(view(on_sale=False, ours=True, has_skus=False, n=0), {None: 9})

    assert plan.actions == (Relist(9),)


def test_a_hand_delisted_item_gets_its_stock_but_stays_down() -> None:
    plan = plan_item(view(on_sale=False, ours=False, s1=0), {1: 5})

    assert plan.actions == (SetStock({1: 5}),)
    assert plan.hand_delisted


def test_an_item_off_sale_at_zero_just_gets_its_stock() -> None:
    plan = plan_item(view(on_sale=False, ours=True, s1=2), {1: 0})

    assert plan.actions == (SetStock({1: 0}),)


@pytest.mark.parametrize("targets", [{}, {1: -1}])
def test_bad_targets_are_refused(targets: dict[int | None, int]) -> None:
    with pytest.raises(ValueError):
        plan_item(view(on_sale=True, s1=1), targets)


@given(
    on_sale=st.booleans(),
    ours=st.booleans(),
    current=st.dictionaries(st.integers(1, 5), st.integers(0, 5), max_size=5),
    targets=st.dictionaries(st.integers(1, 5), st.integers(0, 5), min_size=1, max_size=5),
)
def test_plans_respect_the_shelf_rules(
    on_sale: bool, ours: bool, current: dict[int, int], targets: dict[int, int]
) -> None:
    plan = plan_item(ItemView(1, on_sale, ours, dict(current)), dict(targets))
    kinds = [type(a) for a in plan.actions]

    assert plan.total == sum({**current, **targets}.values())
    assert kinds.count(SetStock) == 1  # the stock is always set, once
    if Delist in kinds:  # only an on-sale item going to zero, and before the stock
        assert on_sale
        assert plan.total == 0
        assert kinds.index(Delist) < kinds.index(SetStock)
    if Relist in kinds:  # only what we delisted, with stock, after the stock is set
        assert ours
        assert not on_sale
        assert plan.total > 0
        assert kinds[-1] is Relist
    assert not (plan.hand_delisted and (ours or on_sale))
