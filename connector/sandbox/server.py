"""Running the sandbox gateway: in a background thread (tests, demo) or in the foreground (CLI).

>>> with SandboxServer(SandboxConfig()) as sandbox:   # doctest: +SKIP
...     httpx.post(sandbox.gateway_url, data=signed_params)
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

from aiohttp import web

from connector.sandbox.faults import FaultConfig
from connector.sandbox.gateway import build_app
from connector.sandbox.model import ZeroOnsale
from connector.sandbox.state import SandboxState

__all__ = ["SandboxConfig", "SandboxEndpoints", "SandboxServer", "run_forever", "serve"]

_START_TIMEOUT_S: Final = 10.0
_WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - only mapped, not bound


@dataclass(frozen=True)
class SandboxConfig:
    """Everything the sandbox needs; secrets are left out of ``repr``."""

    host: str = "127.0.0.1"
    port: int = 0  # 0 = pick a free port
    app_key: str = "sandbox-app-key"
    app_secret: str = field(default="sandbox-app-secret", repr=False)
    session: str = field(default="sandbox-session", repr=False)
    refresh_token: str = field(default="sandbox-refresh-token", repr=False)
    session_ttl_s: float = 86400.0
    refresh_ttl_s: float = 30 * 86400.0
    refreshable: bool = True  # False: fixed-length tokens, every refresh refused
    write_ttl_s: float | None = None  # write permission (w1) lapses this long after issue
    catalog_path: Path | None = None  # None = the built-in demo catalog
    qps: float | None = None  # None = unlimited
    ban_s: int = 1
    daily_quota: int | None = None  # calls per China-time day; None = no quota
    max_skew_s: float = 600.0
    zero_onsale: ZeroOnsale = "reject"
    faults: FaultConfig = field(default_factory=FaultConfig)
    seed: int | None = None
    call_log_size: int = 100_000
    shutdown_timeout_s: float = 1.0  # how long stop() waits for held (fault) responses
    tmc_visibility_s: float = 30.0  # a consumed, unconfirmed TMC message comes back after


@dataclass(frozen=True)
class SandboxEndpoints:
    """Where a running sandbox listens."""

    host: str
    port: int

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in _WILDCARD_HOSTS else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def gateway_url(self) -> str:
        return f"{self.url}/router/rest"

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"


def _bind(config: SandboxConfig) -> socket.socket:
    # Binding here (not inside aiohttp) lets port 0 work: the kernel picks, we read it back.
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    return socket.create_server((config.host, config.port), family=family, backlog=1024)


async def _start(app: web.Application, sock: socket.socket, shutdown_s: float) -> web.AppRunner:
    # access_log=None: per-request logging would cost more than the request itself.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_s)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return runner


class SandboxServer:
    """The gateway on its own event loop in a daemon thread; ``start()`` returns when listening."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self._endpoints: SandboxEndpoints | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def start(self) -> SandboxServer:
        if self._thread is not None:
            raise RuntimeError("the sandbox server is already running")
        # Build the state and bind in the caller's thread so a bad catalog or a busy port
        # raises here, not in the background.
        app = build_app(self.config, SandboxState(self.config))
        sock = _bind(self.config)
        self._endpoints = SandboxEndpoints(self.config.host, sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(app, sock, ready), name="sandbox-gateway", daemon=True
        )
        self._thread.start()
        if not ready.wait(_START_TIMEOUT_S) or self._failure is not None:
            failure = self._failure
            self.stop()
            raise RuntimeError("the sandbox server did not start") from failure
        return self

    def _run(self, app: web.Application, sock: socket.socket, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            runner = loop.run_until_complete(_start(app, sock, self.config.shutdown_timeout_s))
        except Exception as exc:
            self._failure = exc
            sock.close()
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Stop listening, end held responses after ``shutdown_timeout_s``, join the thread."""
        thread, loop = self._thread, self._loop
        self._thread = self._loop = None
        if thread is None or loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed after a failed start
            loop.call_soon_threadsafe(loop.stop)
        thread.join()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoints(self) -> SandboxEndpoints:
        if self._endpoints is None:
            raise RuntimeError("the sandbox server has not been started")
        return self._endpoints

    @property
    def port(self) -> int:
        return self.endpoints.port

    @property
    def url(self) -> str:
        return self.endpoints.url

    @property
    def gateway_url(self) -> str:
        return self.endpoints.gateway_url

    @property
    def token_url(self) -> str:
        return self.endpoints.token_url


async def serve(
    config: SandboxConfig, on_ready: Callable[[SandboxEndpoints], None] | None = None
) -> None:
    """Serve in the foreground until SIGINT or SIGTERM, then shut down cleanly."""
    app = build_app(config, SandboxState(config))
    sock = _bind(config)
    endpoints = SandboxEndpoints(config.host, sock.getsockname()[1])
    runner = await _start(app, sock, config.shutdown_timeout_s)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError):  # not on Windows' default loop
            loop.add_signal_handler(sig, stopping.set)
    try:
        if on_ready is not None:
            on_ready(endpoints)
        await stopping.wait()
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
        await runner.cleanup()


def run_forever(
    config: SandboxConfig, on_ready: Callable[[SandboxEndpoints], None] | None = None
) -> None:
    """Blocking :func:`serve` for the CLI."""
    asyncio.run(serve(config, on_ready))
