"""The retry decision after a failed TOP call, as a table; the backoff's jitter bounds."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.errors import (
    TaobaoAuthError,
    TaobaoCallerError,
    TaobaoCallLimited,
    TaobaoError,
    TaobaoFullUpdateForbidden,
    TaobaoPlatformError,
    TaobaoSessionError,
    TaobaoTransientError,
    TaobaoUnknownOutcome,
)
from connector.taobao.retry import Ban, Raise, Refresh, Retry, RetryPolicy, Step, next_step

METHOD = "taobao.item.quantity.update"
POLICY = RetryPolicy(max_attempts=5, base_s=0.2, max_s=5.0, deadline_s=30.0)


class CeilingRng(random.Random):
    """Always draws the top of the jitter range: the longest backoff the policy allows."""

    def uniform(self, a: float, b: float) -> float:
        return b


def _err(kind: type[TaobaoError]) -> TaobaoError:
    return kind("failed", method=METHOD)


def _limited(seconds: float) -> TaobaoCallLimited:
    return TaobaoCallLimited("App Call Limited", retry_after_s=seconds, method=METHOD, code=7)


def _step(
    error: TaobaoError,
    *,
    attempt: int = 1,
    remaining_s: float = 30.0,
    idempotent: bool = True,
    refreshed: bool = False,
    rng: random.Random | None = None,
) -> Step:
    return next_step(
        error,
        attempt=attempt,
        remaining_s=remaining_s,
        idempotent=idempotent,
        refreshed=refreshed,
        policy=POLICY,
        rng=rng or CeilingRng(),
    )


@pytest.mark.parametrize(
    ("error", "kwargs", "expected"),
    [
        # session: refresh once, then give up
        (_err(TaobaoSessionError), {"refreshed": False}, Refresh()),
        (_err(TaobaoSessionError), {"refreshed": True}, Raise()),
        (_err(TaobaoSessionError), {"refreshed": False, "attempt": 5}, Refresh()),
        # call limited: record the ban; retry only if it ends inside the deadline
        (_limited(10), {"remaining_s": 30}, Ban(10, retry=True)),
        (_limited(10), {"remaining_s": 10}, Ban(10, retry=False)),
        (_limited(31062), {"remaining_s": 30}, Ban(31062, retry=False)),
        (_limited(0.5), {"remaining_s": 1, "idempotent": False}, Ban(0.5, retry=True)),
        # transient: backoff (ceiling rng: 0.2 * 2**(attempt-1), capped at 5)
        (_err(TaobaoTransientError), {"attempt": 1}, Retry(0.2)),
        (_err(TaobaoTransientError), {"attempt": 3}, Retry(0.8)),
        (_err(TaobaoTransientError), {"attempt": 4, "idempotent": False}, Retry(1.6)),
        (_err(TaobaoTransientError), {"attempt": 5}, Raise()),  # max_attempts reached
        (_err(TaobaoTransientError), {"attempt": 9}, Raise()),
        (_err(TaobaoTransientError), {"attempt": 3, "remaining_s": 0.5}, Raise()),  # past deadline
        (_err(TaobaoTransientError), {"attempt": 3, "remaining_s": 0.8}, Raise()),
        (_err(TaobaoTransientError), {"attempt": 3, "remaining_s": 0.81}, Retry(0.8)),
        (_err(TaobaoTransientError), {"attempt": 1, "remaining_s": 0}, Raise()),
        # unknown outcome: only an idempotent call may be repeated
        (_err(TaobaoUnknownOutcome), {"idempotent": True}, Retry(0.2)),
        (_err(TaobaoUnknownOutcome), {"idempotent": False}, Raise()),
        (_err(TaobaoUnknownOutcome), {"idempotent": True, "attempt": 5}, Raise()),
        # everything else: raise at once
        (_err(TaobaoCallerError), {}, Raise()),
        (_err(TaobaoFullUpdateForbidden), {}, Raise()),
        (_err(TaobaoAuthError), {}, Raise()),
        (_err(TaobaoPlatformError), {}, Raise()),
        (_err(TaobaoError), {}, Raise()),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, TaobaoError) else None,
)
def test_next_step(error: TaobaoError, kwargs: dict[str, object], expected: Step) -> None:
    assert _step(error, **kwargs) == expected  # type: ignore[arg-type]


def test_retry_delay_comes_from_the_policy_and_rng() -> None:
    step = _step(_err(TaobaoTransientError), attempt=2, rng=random.Random(7))
    assert step == Retry(POLICY.backoff_s(2, random.Random(7)))


@given(
    seed=st.integers(min_value=0, max_value=2**32),
    attempt=st.integers(min_value=1, max_value=4),
    remaining=st.floats(min_value=0, max_value=10, allow_nan=False),
)
def test_transient_retry_never_outlives_the_deadline(
    seed: int, attempt: int, remaining: float
) -> None:
    step = _step(
        _err(TaobaoTransientError), attempt=attempt, remaining_s=remaining, rng=random.Random(seed)
    )
    assert isinstance(step, Retry | Raise)
    if isinstance(step, Retry):
        assert 0 <= step.delay_s < remaining


# --- backoff --------------------------------------------------------------------------------


@given(
    attempt=st.integers(min_value=1, max_value=80),
    base=st.floats(min_value=0.001, max_value=10),
    cap=st.floats(min_value=0.001, max_value=120),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_is_within_full_jitter_bounds(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    policy = RetryPolicy(base_s=base, max_s=cap)
    delay = policy.backoff_s(attempt, random.Random(seed))
    assert 0 <= delay <= min(cap, base * 2 ** (attempt - 1))


def test_backoff_grows_on_average_until_the_cap() -> None:
    rng = random.Random(20240501)
    means = [
        statistics.fmean(POLICY.backoff_s(attempt, rng) for _ in range(2000))
        for attempt in range(1, 9)
    ]
    # ceilings 0.2, 0.4, 0.8, 1.6, 3.2, then capped at 5.0: the mean is about half of each
    for earlier, later in itertools.pairwise(means[:6]):
        assert later > earlier
    for attempt, mean in enumerate(means, start=1):
        assert mean == pytest.approx(min(5.0, 0.2 * 2 ** (attempt - 1)) / 2, rel=0.1)


def test_backoff_is_reproducible_with_a_seed() -> None:
    first = [POLICY.backoff_s(a, random.Random(1)) for a in range(1, 6)]
    second = [POLICY.backoff_s(a, random.Random(1)) for a in range(1, 6)]
    assert first == second


def test_policy_defaults() -> None:
    assert RetryPolicy() == RetryPolicy(max_attempts=5, base_s=0.2, max_s=5.0, deadline_s=30.0)
