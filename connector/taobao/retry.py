"""What to do after a failed TOP call: a pure decision, tested as a table.

Policies by error class (see ``connector.errors``):

- transient: exponential backoff with full jitter, inside the attempt limit and the deadline;
- unknown outcome: like transient, but only for idempotent calls (full-quantity updates,
  listing, reads); an incremental update is handed back so the caller can read the item;
- call limited: record the ban for every replica, wait it out if it ends before the
  deadline, otherwise hand it back as backpressure;
- session: refresh the token and retry once;
- anything else: raise at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from connector.errors import (
    TaobaoCallLimited,
    TaobaoError,
    TaobaoSessionError,
    TaobaoTransientError,
    TaobaoUnknownOutcome,
)

__all__ = ["Ban", "Raise", "Refresh", "Retry", "RetryPolicy", "Step", "next_step"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 0.2
    max_s: float = 5.0
    deadline_s: float = 30.0

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))]."""
        ceiling = min(self.max_s, self.base_s * (2 ** (attempt - 1)))
        return rng.uniform(0, ceiling)


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float


@dataclass(frozen=True, slots=True)
class Refresh:
    pass


@dataclass(frozen=True, slots=True)
class Ban:
    """Record a ban of ``seconds``; retry afterwards if ``retry`` (else raise)."""

    seconds: float
    retry: bool


@dataclass(frozen=True, slots=True)
class Raise:
    pass


Step = Retry | Refresh | Ban | Raise


def next_step(
    error: TaobaoError,
    *,
    attempt: int,
    remaining_s: float,
    idempotent: bool,
    refreshed: bool,
    policy: RetryPolicy,
    rng: random.Random,
) -> Step:
    """Decide the next step after ``attempt`` (1-based) failed with ``error``."""
    if isinstance(error, TaobaoSessionError):
        return Raise() if refreshed else Refresh()
    if isinstance(error, TaobaoCallLimited):
        return Ban(error.retry_after_s, retry=error.retry_after_s < remaining_s)
    retryable = isinstance(error, TaobaoTransientError) or (
        isinstance(error, TaobaoUnknownOutcome) and idempotent
    )
    if not retryable or attempt >= policy.max_attempts:
        return Raise()
    delay = policy.backoff_s(attempt, rng)
    return Retry(delay) if delay < remaining_s else Raise()
