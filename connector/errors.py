"""Every exception the connector raises, in one tree.

::

    ConnectorError                      anything of ours; the message says what to fix
    ├── ConfigError                     a setting is missing or wrong (names the variable)
    ├── DependencyError                 Redis or the broker cannot be reached: retried
    ├── BrokerRefused                   the broker refuses for good (ACLs, message size) or
    │                                   a Kafka client failed fatally: the process stops
    ├── InvalidEvent                    an input event is undecodable or breaks the rules:
    │                                   it goes to the dead-letter topic with ``reason``
    ├── LedgerLost                      the ledger's marker is gone (a wipe, a wrong
    │                                   REDIS_URL, an empty server): nothing is applied or
    │                                   pushed until an operator restores or rebuilds it
    ├── LedgerBehind                    the ledger holds less of a partition than this
    │                                   process saw it hold (a lagging replica promoted, a
    │                                   lost fsync window): rewind and re-apply
    └── TaobaoError                     a TOP call failed; carries method, code, sub_code,
        │                               sub_msg and request_id, never a secret
        ├── TaobaoTransientError        network error, HTTP 5xx, isp.*, code 10: retried with
        │                               backoff inside the deadline, raised once that is spent
        ├── TaobaoUnknownOutcome        the request may or may not have been applied (timeout
        │                               after sending, connection dropped): a full-quantity
        │                               update may be repeated, an incremental one must be
        │                               resolved by reading the item back first
        ├── TaobaoCallLimited           code 7 ban or our own call budget: backpressure, with
        │                               ``retry_after_s``; pause, do not spin
        ├── TaobaoSessionError          codes 26/27/53 that a token refresh could not cure
        ├── TaobaoAuthError             wrong app key, secret, signature, permissions or clock: fix
        │                               the configuration, retrying cannot help
        ├── TaobaoCallerError           isv.* and codes 40/41: the request itself is wrong
        │   └── TaobaoFullUpdateForbidden  presale/campaign lock: only incremental updates
        └── TaobaoPlatformError         isp.* errors the platform marks as not retryable

Third-party exceptions (httpx, redis) are translated at one boundary each, with
``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "BrokerRefused",
    "ConfigError",
    "ConnectorError",
    "DependencyError",
    "InvalidEvent",
    "LedgerBehind",
    "LedgerLost",
    "TaobaoAuthError",
    "TaobaoCallLimited",
    "TaobaoCallerError",
    "TaobaoError",
    "TaobaoFullUpdateForbidden",
    "TaobaoPlatformError",
    "TaobaoSessionError",
    "TaobaoTransientError",
    "TaobaoUnknownOutcome",
    "redact",
]


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of a secret value in ``text`` with ``***``."""
    # Longest first, so a secret that contains another is hidden whole.
    for secret in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""


class ConfigError(ConnectorError):
    """A setting is missing or invalid; the message names the environment variable."""


class DependencyError(ConnectorError):
    """A service the connector needs (Redis, the broker) cannot be reached."""


class BrokerRefused(ConnectorError):
    """The broker refuses in a way no retry in this process can cure (a missing ACL, a
    message over its size limit) or a Kafka client failed fatally: the connector stops
    uncommitted, so that the pod restarts with fresh clients and the failure is visible."""


class InvalidEvent(ConnectorError):
    """An input event that cannot be applied; ``reason`` is a stable machine-readable code
    (``undecodable``, ``unknown_schema``, ``missing_field``, ``bad_quantity``, …)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class LedgerLost(ConnectorError):
    """The ledger's marker is missing from Redis: whatever it held is gone, and a quantity
    computed from what is there now would be wrong. Stop applying and pushing."""


class LedgerBehind(ConnectorError):
    """Redis holds less of these partitions than was applied to it: ``positions`` maps each
    (topic, partition) to the last offset the ledger now holds (-1: none)."""

    def __init__(self, positions: dict[tuple[str, int], int]) -> None:
        self.positions = positions
        named = ", ".join(f"{t}[{p}] at {o}" for (t, p), o in sorted(positions.items()))
        super().__init__(f"the ledger is behind what was applied to it: {named}")


class TaobaoError(ConnectorError):
    """A Taobao Open Platform call failed.

    Only protocol fields are kept: the request parameters (which hold the session) are not.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        code: int | None = None,
        sub_code: str | None = None,
        sub_msg: str | None = None,
        request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.method = method
        self.code = code
        self.sub_code = sub_code
        self.sub_msg = sub_msg
        self.request_id = request_id
        self.attempts = attempts
        super().__init__(message)

    def __str__(self) -> str:
        parts = [f"{self.method}: {self.args[0]}"]
        if self.code is not None:
            parts.append(f"code={self.code}")
        if self.sub_code:
            parts.append(f"sub_code={self.sub_code}")
        if self.sub_msg:
            parts.append(f"sub_msg={self.sub_msg!r}")
        parts.append(f"request_id={self.request_id or '-'}")
        if self.attempts > 1:
            parts.append(f"attempts={self.attempts}")
        return " ".join(parts)


class TaobaoTransientError(TaobaoError):
    """The platform or the network failed for now; the same request may succeed later."""


class TaobaoUnknownOutcome(TaobaoError):
    """The request was sent but no answer came back: it may have been applied."""


class TaobaoCallLimited(TaobaoError):
    """Calls are banned or over budget for ``retry_after_s`` seconds."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float,
        method: str,
        code: int | None = None,
        sub_code: str | None = None,
        sub_msg: str | None = None,
        request_id: str | None = None,
        attempts: int = 1,
    ) -> None:
        self.retry_after_s = retry_after_s
        # False when only this API (a ban of one API) or only reads that can wait (the
        # daily quota's last share) are stopped: other calls go on.
        self.app_wide = True
        super().__init__(
            message,
            method=method,
            code=code,
            sub_code=sub_code,
            sub_msg=sub_msg,
            request_id=request_id,
            attempts=attempts,
        )


class TaobaoSessionError(TaobaoError):
    """The seller's session is missing, invalid or expired and could not be refreshed."""


class TaobaoAuthError(TaobaoError):
    """The app's credentials or permissions are wrong: fix the configuration."""


class TaobaoCallerError(TaobaoError):
    """The request is wrong (isv.* business error, missing or invalid argument)."""


class TaobaoFullUpdateForbidden(TaobaoCallerError):
    """The item is locked (presale, campaign) and only accepts incremental stock changes."""


class TaobaoPlatformError(TaobaoError):
    """A platform-side error that the platform says retrying will not fix."""
