"""Fault injection and call limiting for the sandbox gateway: pure, clock and rng injected.

A :class:`FaultConfig` (JSON-friendly) says how often each kind of fault happens; :func:`decide`
draws one uniform number from a seedable :class:`random.Random` per call and picks at most one
fault, so a given seed replays the same fault sequence. Kinds:

``error``
    answer with an error instead of running the API (nothing applied). Keys of
    ``error_rates`` are a platform code (``"7"``, ``"10"``, …) or an ``isp.*``/``isv.*``
    sub code, which is answered as code 15 "Remote service error" with that sub code.
    An injected code 7 has the real call-limit shape and also starts a ban.
``timeout``
    hold the response ``timeout_s`` (nothing applied), then answer
    ``isp.top-remote-connection-timeout``.
``hang_after_apply``
    apply the change, then hold the (successful) response ``timeout_s``.
``drop_after_apply``
    apply the change, then close the connection without any response: the client's
    "unknown outcome".

``latency_ms`` is added to every call the config covers (``methods``; ``None`` = all).

:class:`CallLimiter` is the per-app-key token bucket behind error 7 (reference §6).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from connector.taobao.protocol import PLATFORM_ERRORS

__all__ = [
    "BAN_SUB_CODE",
    "NO_FAULT",
    "CallLimiter",
    "FaultConfig",
    "FaultDecision",
    "FaultKind",
    "InjectedError",
    "ban_message",
    "decide",
    "injected_error",
]

FaultKind = Literal["none", "error", "timeout", "hang_after_apply", "drop_after_apply"]
BAN_SUB_CODE: Final = "accesscontrol.limited-by-app-access-count"
_CALL_LIMITED: Final = 7
_REMOTE_ERROR: Final = 15
_FIELDS: Final = frozenset(
    {
        "latency_ms",
        "error_rates",
        "timeout_rate",
        "timeout_s",
        "hang_after_apply_rate",
        "drop_after_apply_rate",
        "methods",
    }
)


def ban_message(remaining_s: int) -> str:
    """The platform's ban text; clients parse the number out of it."""
    return f"This ban will last for {remaining_s} more seconds"


@dataclass(frozen=True)
class InjectedError:
    code: int
    msg: str
    sub_code: str | None = None
    sub_msg: str | None = None

    @property
    def starts_ban(self) -> bool:
        return self.code == _CALL_LIMITED


def injected_error(key: str) -> InjectedError:
    """The real-shaped error for an ``error_rates`` key (validated by :class:`FaultConfig`)."""
    if key.isdigit():
        code = int(key)
        if code == _CALL_LIMITED:
            # sub_msg is filled by the gateway with the actual remaining ban time.
            return InjectedError(code, PLATFORM_ERRORS[code], BAN_SUB_CODE, None)
        return InjectedError(code, PLATFORM_ERRORS.get(code, "Remote service error"))
    return InjectedError(_REMOTE_ERROR, "Remote service error", key, "sandbox injected fault")


@dataclass(frozen=True)
class FaultConfig:
    """How often each fault happens, per API call (probabilities in [0, 1], summing to ≤ 1)."""

    latency_ms: float = 0.0
    error_rates: Mapping[str, float] = field(default_factory=dict)
    timeout_rate: float = 0.0
    timeout_s: float = 10.0
    hang_after_apply_rate: float = 0.0
    drop_after_apply_rate: float = 0.0
    methods: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Normalise caller-supplied lists/dicts so the frozen config cannot change under us.
        object.__setattr__(self, "error_rates", dict(self.error_rates))
        if self.methods is not None:
            object.__setattr__(self, "methods", tuple(self.methods))
        self._validate()

    def _validate(self) -> None:
        if self.latency_ms < 0 or self.timeout_s < 0:
            raise ValueError("latency_ms and timeout_s must be >= 0")
        for key in self.error_rates:
            if not (key.isdigit() or key.startswith(("isp.", "isv."))):
                raise ValueError(
                    f"error_rates key {key!r}: use a platform code such as '7' or '10', "
                    "or an isp.*/isv.* sub_code"
                )
        rates = [*self.error_rates.values(), *self.kind_rates().values()]
        if any(not 0.0 <= r <= 1.0 for r in rates):
            raise ValueError("every rate must be between 0 and 1")
        if sum(rates) > 1.0 + 1e-9:
            raise ValueError(f"the rates add up to {sum(rates):g}; at most 1 is allowed")

    def kind_rates(self) -> dict[FaultKind, float]:
        """The non-error fault kinds and their rates, in decision order."""
        return {
            "timeout": self.timeout_rate,
            "hang_after_apply": self.hang_after_apply_rate,
            "drop_after_apply": self.drop_after_apply_rate,
        }

    @property
    def active(self) -> bool:
        return (
            self.latency_ms > 0 or any(self.error_rates.values()) or any(self.kind_rates().values())
        )

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> FaultConfig:
        """Build from a JSON object; unknown keys or wrong types raise ``ValueError``."""
        if not isinstance(document, Mapping):
            # ValueError like every other bad-config case, so callers catch one type.
            raise ValueError("the fault config must be a JSON object")  # noqa: TRY004
        unknown = set(document) - _FIELDS
        if unknown:
            raise ValueError(f"unknown fault config keys: {', '.join(sorted(unknown))}")
        rates = document.get("error_rates", {})
        methods = document.get("methods")
        if not isinstance(rates, Mapping) or not all(_is_number(v) for v in rates.values()):
            raise ValueError("error_rates must be an object of key -> probability")
        if methods is not None and not (
            isinstance(methods, list) and all(isinstance(m, str) for m in methods)
        ):
            raise ValueError("methods must be null or a list of API method names")
        numbers = {k: document[k] for k in _FIELDS - {"error_rates", "methods"} if k in document}
        for key, value in numbers.items():
            if not _is_number(value):
                raise ValueError(f"{key} must be a number, got {value!r}")
        return cls(
            error_rates={str(k): float(v) for k, v in rates.items()},
            methods=None if methods is None else tuple(methods),
            **{k: float(v) for k, v in numbers.items()},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency_ms,
            "error_rates": dict(self.error_rates),
            "timeout_rate": self.timeout_rate,
            "timeout_s": self.timeout_s,
            "hang_after_apply_rate": self.hang_after_apply_rate,
            "drop_after_apply_rate": self.drop_after_apply_rate,
            "methods": None if self.methods is None else list(self.methods),
        }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class FaultDecision:
    kind: FaultKind = "none"
    latency_s: float = 0.0
    hold_s: float = 0.0
    error: InjectedError | None = None

    @property
    def applies_change(self) -> bool:
        """Whether the API call itself runs (its change is applied)."""
        return self.kind in ("none", "hang_after_apply", "drop_after_apply")


NO_FAULT: Final = FaultDecision()


def decide(config: FaultConfig, rng: random.Random, method: str) -> FaultDecision:
    """Pick at most one fault for a call of ``method`` with a single draw from ``rng``."""
    if config.methods is not None and method not in config.methods:
        return NO_FAULT
    latency = config.latency_ms / 1000.0
    kinds = config.kind_rates()
    if not any(config.error_rates.values()) and not any(kinds.values()):
        return FaultDecision(latency_s=latency) if latency else NO_FAULT
    draw = rng.random()
    bound = 0.0
    for key, rate in config.error_rates.items():
        bound += rate
        if draw < bound:
            return FaultDecision("error", latency, 0.0, injected_error(key))
    for kind, rate in kinds.items():
        bound += rate
        if draw < bound:
            return FaultDecision(kind, latency, config.timeout_s)
    return FaultDecision(latency_s=latency)


@dataclass
class _Bucket:
    tokens: float
    updated: float
    banned_until: float = 0.0


class CallLimiter:
    """Per-app-key token bucket (``qps`` refill, burst ``max(1, qps)``) with bans.

    A call over the budget bans the app for ``ban_s`` seconds; :meth:`ban` also starts one of
    any length. The calls during a ban are refused without spending tokens. ``now`` is a
    monotonic time in seconds.
    """

    def __init__(self, qps: float | None, ban_s: int) -> None:
        self._qps = qps
        self._burst = max(1.0, qps or 1.0)
        self._ban_s = ban_s
        self._buckets: dict[str, _Bucket] = {}
        # Bans of one API (reference §6): method -> (until, sub code).
        self._api_bans: dict[str, tuple[float, str]] = {}

    def ban_api(self, method: str, now: float, seconds: float, sub_code: str) -> int:
        """Ban one API: ``accesscontrol.limited-by-api-access-count`` (platform-wide) or
        ``accesscontrol.limited-by-app-api-access-count`` (this app, before launch); the
        other APIs go on. Returns the remaining ban in whole seconds."""
        until, _ = self._api_bans.get(method, (0.0, sub_code))
        self._api_bans[method] = (max(until, now + seconds), sub_code)
        return _remaining(self._api_bans[method][0], now)

    def api_banned(self, method: str, now: float) -> tuple[str, int] | None:
        """(sub code, whole seconds left) while ``method`` is banned, else ``None``."""
        found = self._api_bans.get(method)
        if found is None or found[0] <= now:
            return None
        return found[1], _remaining(found[0], now)

    def check(self, app_key: str, now: float) -> int | None:
        """``None`` if the call may go on, else the remaining ban in whole seconds (≥ 1)."""
        bucket = self._bucket(app_key, now)
        if now < bucket.banned_until:
            return _remaining(bucket.banned_until, now)
        if self._qps is None:
            return None
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._qps)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return self.ban(app_key, now)

    def ban(self, app_key: str, now: float, seconds: float | None = None) -> int:
        """Start (or extend) a ban of ``seconds`` (default ``ban_s``) from ``now``.

        A ban already running longer is left as it is. Returns the remaining ban in whole
        seconds (≥ 1), the number the ban message shows.
        """
        bucket = self._bucket(app_key, now)
        length = self._ban_s if seconds is None else seconds
        bucket.banned_until = max(bucket.banned_until, now + length)
        return _remaining(bucket.banned_until, now)

    def ban_left(self, app_key: str, now: float) -> float:
        """Seconds left of ``app_key``'s ban (0.0 when it is not banned)."""
        bucket = self._buckets.get(app_key)
        return 0.0 if bucket is None else max(0.0, bucket.banned_until - now)

    def bans(self, now: float) -> dict[str, float]:
        """Active bans: app key -> seconds left."""
        return {
            key: round(b.banned_until - now, 3)
            for key, b in self._buckets.items()
            if b.banned_until > now
        }

    def reset(self) -> None:
        self._buckets.clear()
        self._api_bans.clear()

    def _bucket(self, app_key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(app_key)
        if bucket is None:
            bucket = self._buckets[app_key] = _Bucket(tokens=self._burst, updated=now)
        return bucket


def _remaining(until: float, now: float) -> int:
    return max(1, math.ceil(until - now))
