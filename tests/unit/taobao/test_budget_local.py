"""The process-local call budget (GCRA) and platform bans, with a fake clock and sleep."""

from __future__ import annotations

import pytest

from connector.errors import TaobaoCallLimited
from connector.taobao.budget import BudgetPolicy, LocalCallBudget

UPDATE = "taobao.item.quantity.update"
BATCH = "taobao.skus.quantity.update"


class FakeTime:
    """A clock that moves only when the code under test sleeps (if ``advance``)."""

    def __init__(self, *, advance: bool = True, start: float = 1000.0) -> None:
        self.now = start
        self.advance = advance
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    @property
    def slept(self) -> list[float]:
        """The non-zero sleeps (whether a zero wait sleeps at all is not part of the contract)."""
        return [s for s in self.sleeps if s > 0]

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.advance:
            self.now += seconds


def _budget(policy: BudgetPolicy, time: FakeTime) -> LocalCallBudget:
    return LocalCallBudget(policy, clock=time.clock, sleep=time.sleep)


async def _waits(
    budget: LocalCallBudget, method: str, n: int, max_wait_s: float = 60
) -> list[float]:
    return [await budget.acquire(method, max_wait_s=max_wait_s) for _ in range(n)]


def test_policy_buckets() -> None:
    policy = BudgetPolicy(qps=10, burst=2, method_qps={BATCH: 4})
    assert policy.buckets(UPDATE) == [(None, 100.0, 2)]
    assert policy.buckets(BATCH) == [(None, 100.0, 2), (BATCH, 250.0, 2)]


@pytest.mark.parametrize(
    ("qps", "burst", "expected"),
    [
        (10, 1, [0, 0.1, 0.2, 0.3, 0.4]),
        (10, 3, [0, 0, 0, 0.1, 0.2, 0.3]),
        (2, 2, [0, 0, 0.5, 1.0]),
        (0.5, 1, [0, 2.0, 4.0]),
    ],
)
async def test_burst_then_queue_at_one_instant(
    qps: float, burst: int, expected: list[float]
) -> None:
    """Callers arriving together: the burst goes at once, the rest queue 1/qps apart."""
    time = FakeTime(advance=False)
    waits = await _waits(_budget(BudgetPolicy(qps=qps, burst=burst), time), UPDATE, len(expected))
    assert waits == pytest.approx(expected)
    assert time.slept == pytest.approx([w for w in expected if w > 0])


async def test_burst_then_paced_when_calling_in_a_loop() -> None:
    time = FakeTime()
    budget = _budget(BudgetPolicy(qps=10, burst=3), time)
    waits = await _waits(budget, UPDATE, 7)
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.1, 0.1, 0.1])
    assert time.now == pytest.approx(1000.4)


async def test_idle_time_refills_the_burst_but_no_further() -> None:
    time = FakeTime()
    budget = _budget(BudgetPolicy(qps=10, burst=2), time)
    await _waits(budget, UPDATE, 4)
    time.now += 60  # a long pause earns back the burst, not 600 calls
    assert await _waits(budget, UPDATE, 4) == pytest.approx([0, 0, 0.1, 0.1])


async def test_method_budget_tightens_only_that_method() -> None:
    time = FakeTime()
    budget = _budget(BudgetPolicy(qps=10, method_qps={BATCH: 2}), time)
    assert await _waits(budget, BATCH, 3) == pytest.approx([0, 0.5, 0.5])
    time.now += 10
    assert await _waits(budget, UPDATE, 3) == pytest.approx([0, 0.1, 0.1])


async def test_method_budget_shares_the_app_budget() -> None:
    """Calls of every method count against the app-wide budget."""
    time = FakeTime(advance=False)
    budget = _budget(BudgetPolicy(qps=10, method_qps={BATCH: 2}), time)
    assert await budget.acquire(UPDATE, max_wait_s=60) == 0
    assert await budget.acquire(UPDATE, max_wait_s=60) == pytest.approx(0.1)
    # the method bucket is fresh, but the app bucket is 0.2 s ahead
    assert await budget.acquire(BATCH, max_wait_s=60) == pytest.approx(0.2)
    # now the method bucket dominates: 0.5 s after the previous BATCH slot
    assert await budget.acquire(BATCH, max_wait_s=60) == pytest.approx(0.5)


async def test_wait_beyond_max_raises_without_reserving() -> None:
    time = FakeTime(advance=False)
    budget = _budget(BudgetPolicy(qps=10), time)
    assert await budget.acquire(UPDATE, max_wait_s=1) == 0
    with pytest.raises(TaobaoCallLimited) as info:
        await budget.acquire(UPDATE, max_wait_s=0.05)
    assert info.value.retry_after_s == pytest.approx(0.1)
    assert info.value.method == UPDATE
    assert "budget" in str(info.value)
    # the refused call took no slot: the next caller waits 0.1 s, not 0.2 s
    assert await budget.acquire(UPDATE, max_wait_s=1) == pytest.approx(0.1)
    assert time.slept == pytest.approx([0.1])


async def test_wait_equal_to_max_is_allowed() -> None:
    time = FakeTime(advance=False)
    budget = _budget(BudgetPolicy(qps=4), time)
    await budget.acquire(UPDATE, max_wait_s=0)
    assert await budget.acquire(UPDATE, max_wait_s=0.25) == pytest.approx(0.25)


async def test_ban_that_fits_is_waited_out() -> None:
    time = FakeTime()
    budget = _budget(BudgetPolicy(qps=10), time)
    await budget.ban(5)
    assert await budget.acquire(UPDATE, max_wait_s=10) == pytest.approx(5)
    assert time.slept == pytest.approx([5])
    assert time.now == pytest.approx(1005)
    assert await budget.acquire(UPDATE, max_wait_s=10) == pytest.approx(0.1)  # paced again


async def test_ban_beyond_max_wait_raises_with_retry_after() -> None:
    time = FakeTime()
    budget = _budget(BudgetPolicy(qps=10), time)
    await budget.ban(31062)
    time.now += 62
    with pytest.raises(TaobaoCallLimited) as info:
        await budget.acquire(UPDATE, max_wait_s=30)
    assert info.value.retry_after_s == pytest.approx(31000)
    assert "banned" in str(info.value)
    assert time.slept == []  # it did not sleep


async def test_ban_ends() -> None:
    time = FakeTime()
    budget = _budget(BudgetPolicy(qps=10), time)
    await budget.ban(5)
    time.now += 5.001
    assert await budget.acquire(UPDATE, max_wait_s=0) == 0


async def test_ban_is_never_shortened() -> None:
    time = FakeTime()
    budget = _budget(BudgetPolicy(qps=10), time)
    await budget.ban(60)
    await budget.ban(5)
    with pytest.raises(TaobaoCallLimited) as info:
        await budget.acquire(UPDATE, max_wait_s=10)
    assert info.value.retry_after_s == pytest.approx(60)
    await budget.ban(120)
    with pytest.raises(TaobaoCallLimited) as info:
        await budget.acquire(UPDATE, max_wait_s=10)
    assert info.value.retry_after_s == pytest.approx(120)


async def test_ban_then_budget_wait_counts_against_one_max_wait() -> None:
    """After waiting out a ban, the budget wait gets only what is left of max_wait_s."""
    time = FakeTime()
    budget = _budget(BudgetPolicy(qps=1), time)
    await budget.acquire(UPDATE, max_wait_s=0)  # next slot in 1 s
    await budget.ban(0.5)
    assert await budget.acquire(UPDATE, max_wait_s=1) == pytest.approx(1.0)
    await budget.ban(0.5)
    with pytest.raises(TaobaoCallLimited):
        await budget.acquire(UPDATE, max_wait_s=0.9)  # 0.5 ban + 0.5 budget > 0.9
