"""Everything one gateway app knows: the :class:`SandboxState` and the stores it owns.

:class:`SandboxState` (kept in the app under :data:`STATE_KEY`) holds the catalog, the fault
config and its rng, the :class:`TokenStore` of issued OAuth tokens, the call limiter and the
call log, plus the injected clocks. :func:`load_configured_catalog` reads the catalog a
:class:`~connector.sandbox.server.SandboxConfig` names (or the built-in demo one).
"""

from __future__ import annotations

import math
import random
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from connector.sandbox.call_log import CallLog
from connector.sandbox.catalog import Catalog, parse_catalog_text
from connector.sandbox.faults import CallLimiter, FaultConfig
from connector.sandbox.model import CatalogError
from connector.sandbox.quota import DailyQuota
from connector.sandbox.responses import Body
from connector.sandbox.tmc import MessageService
from connector.sandbox.trades import TradeBook
from connector.taobao.protocol import parse_timestamp

if TYPE_CHECKING:
    from connector.sandbox.server import SandboxConfig

__all__ = ["STATE_KEY", "SandboxState", "TokenStore", "load_configured_catalog"]

_SELLER_ID: Final = "2200000000001"
_SELLER_NICK: Final = "sandbox_b_01"


class TokenStore:
    """Issued access and refresh tokens with their expiry (epoch seconds).

    ``refreshable=False`` stands for the apps whose tokens are fixed-length (reference §4.3:
    "其他类型应用（如商家后台）使用固定时长token，不提供刷新功能"): no refresh is granted.
    ``write_ttl_s`` stands for write permission (``w1_expires_in``) lapsing before the
    session: after it, write APIs are refused while reads go on.
    """

    def __init__(
        self,
        session_ttl_s: float,
        refresh_ttl_s: float,
        *,
        refreshable: bool = True,
        write_ttl_s: float | None = None,
    ) -> None:
        self._session_ttl = session_ttl_s
        self._refresh_ttl = refresh_ttl_s
        self.refreshable = refreshable
        self._write_ttl = write_ttl_s
        self._access: dict[str, float] = {}
        self._write: dict[str, float] = {}
        self._refresh: dict[str, float] = {}

    def restore(self, session: str, refresh_token: str, now: float) -> None:
        self._access = {session: now + self._session_ttl}
        self._write = {session: now + self._write_lifetime()}
        self._refresh = {refresh_token: now + self._refresh_ttl} if refresh_token else {}

    def write_valid(self, token: str, now: float) -> bool:
        return now < self._write.get(token, 0.0)

    def _write_lifetime(self) -> float:
        if self._write_ttl is None:
            return self._session_ttl
        return min(self._write_ttl, self._session_ttl)

    def session_valid(self, token: str, now: float) -> bool:
        expiry = self._access.get(token)
        return expiry is not None and now < expiry

    def expire_all(self) -> int:
        self._access = dict.fromkeys(self._access, 0.0)
        return len(self._access)

    def rotate(self, refresh_token: str, now: float) -> Body | None:
        """Swap a valid refresh token for a new token pair; ``None`` if it is not valid."""
        if not self.refreshable:
            return None
        expiry = self._refresh.pop(refresh_token, None)
        if expiry is None or now >= expiry:
            return None
        access, refresh = secrets.token_hex(24), secrets.token_hex(24)
        self._access[access] = now + self._session_ttl
        self._write[access] = now + self._write_lifetime()
        self._refresh[refresh] = now + self._refresh_ttl
        expires_in = math.floor(self._session_ttl)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "refresh_token": refresh,
            "re_expires_in": math.floor(self._refresh_ttl),
            "r1_expires_in": expires_in,
            "w1_expires_in": math.floor(self._write_lifetime()),
            "taobao_user_id": _SELLER_ID,
            "taobao_user_nick": _SELLER_NICK,
        }


def load_configured_catalog(path: Path | None) -> Catalog:
    """The catalog file at ``path`` or the built-in demo one; :class:`CatalogError` if bad."""
    if path is None:
        text = resources.files("connector.sandbox").joinpath("demo_catalog.json").read_text()
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogError(f"cannot read catalog file {path}: {exc}") from None
    return parse_catalog_text(text)


@dataclass
class SandboxState:
    """Everything the gateway knows; owned by one app, touched only on its event loop."""

    config: SandboxConfig
    catalog: Catalog = field(init=False)
    faults: FaultConfig = field(init=False)
    rng: random.Random = field(init=False)
    tokens: TokenStore = field(init=False)
    limiter: CallLimiter = field(init=False)
    quota: DailyQuota = field(init=False)
    calls: CallLog = field(init=False)
    trades: TradeBook = field(init=False)  # Taobao's own orders
    tmc: MessageService = field(init=False)  # the message service's queue
    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    ids: random.Random = field(default_factory=random.Random)  # request ids only
    # Clients send the same timestamp text for a whole second: parse it once.
    _last_timestamp: tuple[str, datetime] = field(
        default=("", datetime.min.replace(tzinfo=UTC)), init=False, repr=False
    )

    def __post_init__(self) -> None:
        self.tokens = TokenStore(
            self.config.session_ttl_s,
            self.config.refresh_ttl_s,
            refreshable=self.config.refreshable,
            write_ttl_s=self.config.write_ttl_s,
        )
        self.limiter = CallLimiter(self.config.qps, self.config.ban_s)
        self.quota = DailyQuota(self.config.daily_quota)
        self.calls = CallLog(self.config.call_log_size)
        self.reset()

    def reset(self, catalog: Catalog | None = None, faults: FaultConfig | None = None) -> None:
        self.catalog = catalog or load_configured_catalog(self.config.catalog_path)
        self.faults = faults or self.config.faults
        self.rng = random.Random(self.config.seed)  # noqa: S311 - fault draws, not crypto
        self.tokens.restore(self.config.session, self.config.refresh_token, self.wall())
        self.limiter.reset()
        self.quota.reset()
        self.calls.clear()
        self.trades = TradeBook()
        self.tmc = MessageService(visibility_s=self.config.tmc_visibility_s)

    def publish(self, published: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Queue TMC messages (for the topics the seller permitted)."""
        now = self.now()
        for topic, content in published:
            self.tmc.publish(topic, content, now=now)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall(), tz=UTC)

    def parse_timestamp(self, text: str) -> datetime:
        if self._last_timestamp[0] != text:
            self._last_timestamp = (text, parse_timestamp(text))
        return self._last_timestamp[1]


STATE_KEY: Final = web.AppKey("sandbox_state", SandboxState)
