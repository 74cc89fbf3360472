"""The gateway's call log: every ``/router/rest`` and ``/token`` request, numbered and redacted.

:class:`CallLog` is a bounded, numbered log (oldest dropped first) read by
``GET /sandbox/calls``; :func:`log_call` records one answered request from its
:class:`Outcome`, banned and refused ones included, with the wall time it arrived
(``received``) and was answered (``time``); :func:`redact` masks secrets and cuts long
values; :func:`log_time` renders a wall time the way the log shows it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from connector.sandbox.responses import Body
from connector.taobao.protocol import CHINA_TZ

__all__ = ["REDACTED_PARAMS", "CallLog", "Outcome", "log_call", "log_time", "redact"]

REDACTED_PARAMS: Final = frozenset({"sign", "session", "refresh_token", "client_secret"})
_LOG_VALUE_MAX: Final = 256


class CallLog:
    """A bounded, numbered log of calls (oldest dropped first)."""

    def __init__(self, size: int) -> None:
        self._entries: deque[Body] = deque(maxlen=max(1, size))
        self._seq = 0

    def record(self, entry: Body) -> None:
        self._seq += 1
        self._entries.append({"seq": self._seq, **entry})

    def since(self, seq: int, limit: int) -> tuple[list[Body], int]:
        """Entries after ``seq`` (times as China-time ISO strings) and the last seq returned."""
        chosen = [e for e in self._entries if e["seq"] > seq][:limit]
        shown = [
            {**e, "time": log_time(e["time"]), "received": log_time(e["received"])} for e in chosen
        ]
        return shown, (chosen[-1]["seq"] if chosen else max(seq, 0))

    def clear(self) -> None:
        self._entries.clear()
        self._seq = 0


def log_time(epoch: float) -> str:
    """A wall time (epoch seconds) as the log shows it: China-time ISO 8601 with ms."""
    return datetime.fromtimestamp(epoch, CHINA_TZ).isoformat(timespec="milliseconds")


def redact(params: Mapping[str, str]) -> dict[str, str]:
    """Params safe to show: secrets masked, long values cut so the log stays bounded."""
    shown: dict[str, str] = {}
    for key, value in params.items():
        if key in REDACTED_PARAMS:
            shown[key] = "***"
        elif len(value) > _LOG_VALUE_MAX:
            shown[key] = f"{value[:_LOG_VALUE_MAX]}…(+{len(value) - _LOG_VALUE_MAX} chars)"
        else:
            shown[key] = value
    return shown


@dataclass
class Outcome:
    """How one request was answered: the body, and what the call log says about it."""

    body: Body
    applied: bool = False
    fault: str | None = None
    drop: bool = False


def log_call(
    log: CallLog,
    params: Mapping[str, str],
    outcome: Outcome,
    rid: str,
    *,
    received: float,
    answered: float,
    started: float,
) -> None:
    """Record one answered request.

    ``received`` and ``answered`` are wall times (epoch seconds) of its arrival and answer,
    ``started`` the ``time.perf_counter()`` at its arrival (for ``duration_ms``).
    """
    error = outcome.body.get("error_response")
    log.record(
        {
            # Times are rendered when read: keeps the hot path lean.
            "time": answered,
            "received": received,
            "method": params.get("method") or None,
            "app_key": params.get("app_key") or None,
            "params": redact(params),
            "code": None if error is None else error["code"],
            "sub_code": None if error is None else error.get("sub_code"),
            "request_id": rid,
            "applied": outcome.applied,
            "fault": outcome.fault,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }
    )
