"""The platform's daily call quota per app key (reference §6): counted per China-time day,
refused with code 7 ``accesscontrol.limited-by-app-access-count`` until midnight China
time once spent. Pure, wall clock passed in.

Which calls count is UNCONFIRMED; the sandbox counts every call that passed the gateway's
checks of who is calling (app key, timestamp, signature) and names an existing API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from connector.taobao.protocol import CHINA_TZ

__all__ = ["DailyQuota"]


@dataclass
class DailyQuota:
    limit: int | None  # calls per China-time day; None: no quota
    _used: dict[tuple[str, date], int] = field(default_factory=dict)

    def spend(self, app_key: str, wall: float) -> int | None:
        """Count one call; ``None`` if it may go on, else the whole seconds (≥ 1) until the
        quota resets."""
        if self.limit is None:
            return None
        moment = datetime.fromtimestamp(wall, tz=CHINA_TZ)
        key = (app_key, moment.date())
        if self._used.get(key, 0) >= self.limit:
            midnight = datetime.combine(moment.date() + timedelta(days=1), datetime.min.time())
            left = midnight.replace(tzinfo=CHINA_TZ).timestamp() - wall
            return max(1, math.ceil(left))
        self._used[key] = self._used.get(key, 0) + 1
        return None

    def used(self, app_key: str, wall: float) -> int:
        day = datetime.fromtimestamp(wall, tz=CHINA_TZ).date()
        return self._used.get((app_key, day), 0)

    def reset(self) -> None:
        self._used.clear()
