"""``/healthz``, ``/readyz`` and ``/metrics`` for Kubernetes and Prometheus.

- ``/healthz``: the process is alive and its event loop answers.
- ``/readyz``: the ingest loop's health decides: 200 only when the broker answers,
  partitions are assigned, Redis answers, and the ingest loop is neither wedged nor stuck
  retrying a Redis or broker step; otherwise 503 with the failing checks. The projection
  (ledger -> Taobao) is reported in the body under ``projection`` but never makes the pod
  unready: a Taobao ban, outage or refused session pauses only the pushes, ingest goes on,
  and another replica could not push either (the ban and the budget are per app). Cached
  for a second, so probes cost nothing under load.
- ``/metrics``: every instrument, in Prometheus text format.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from redis.exceptions import RedisError

from connector.retrying import Startup
from connector.service.app import Connector

__all__ = ["Check", "HealthServer", "Readiness"]

CHECK_TIMEOUT_S: Final = 1.0
CACHE_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


class Readiness:
    """The readiness checks of one running connector."""

    def __init__(
        self,
        connector: Connector | None,
        *,
        stall_timeout_s: float,
        startup: Startup | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._started = connector
        self._startup = startup or Startup()
        self._stall_timeout_s = stall_timeout_s
        self._clock = clock
        self._cached: tuple[float, list[Check]] | None = None
        self._lock = asyncio.Lock()

    def attach(self, connector: Connector) -> None:
        """The connector has started: its checks replace the start-up one."""
        self._started = connector
        self._cached = None

    @property
    def _connector(self) -> Connector:
        assert self._started is not None
        return self._started

    async def checks(self) -> list[Check]:
        if self._started is None:
            waited_s = self._clock() - self._startup.since
            detail = f"waiting for {self._startup.waiting_for} ({waited_s:.0f}s)"
            return [Check("startup", False, detail)]
        async with self._lock:
            now = self._clock()
            if self._cached is not None and now - self._cached[0] < CACHE_S:
                return self._cached[1]
            broker, redis = await asyncio.gather(self._broker(), self._redis())
            checks = [*broker, redis, self._ledger(), self._ingest()]
            self._cached = (now, checks)
            return checks

    async def _broker(self) -> list[Check]:
        connector = self._connector
        reachable = await asyncio.to_thread(
            connector.producer.broker_reachable,
            connector.settings.kafka.orders_topic,
            timeout_s=CHECK_TIMEOUT_S,
        )
        assigned = connector.consumer.assignment()
        return [
            Check(
                "broker", reachable, "" if reachable else "no answer from KAFKA_BOOTSTRAP_SERVERS"
            ),
            Check("partitions", bool(assigned), f"{len(assigned)} assigned"),
        ]

    async def _redis(self) -> Check:
        try:
            await asyncio.wait_for(self._connector.redis.ping(), CHECK_TIMEOUT_S)
        except (RedisError, TimeoutError, OSError) as exc:
            return Check("redis", False, type(exc).__name__)
        return Check("redis", True)

    def _ledger(self) -> Check:
        reason = self._connector.guard.reason
        return Check("ledger", reason is None, f"LEDGER_LOST: {reason}" if reason else "")

    def _ingest(self) -> Check:
        state = self._connector.ingest.state
        idle_s = self._clock() - state.last_loop_at if state.last_loop_at else 0.0
        return Check(
            "ingest",
            state.failing_step is None and idle_s < self._stall_timeout_s,
            f"retrying {state.failing_step}" if state.failing_step else f"idle {idle_s:.0f}s",
        )

    def projection(self) -> dict[str, Any]:
        """The projection's state for the body: informative, never gating."""
        if self._started is None:
            return {"ok": False, "state": "starting"}
        connector = self._connector
        state = connector.projection_loop.state
        client = connector.client
        idle_s = self._clock() - state.last_loop_at if state.last_loop_at else 0.0
        session_ok = client.session_usable()
        if state.failing_step:
            status = f"retrying {state.failing_step}"
        elif state.paused:
            status = state.pause_reason or "paused"
        elif not session_ok:
            status = "no usable Taobao session"
        elif idle_s >= self._stall_timeout_s:
            status = f"stalled {idle_s:.0f}s"
        else:
            status = "pushing"
        return {
            "ok": status == "pushing",
            "state": status,
            "ban_remaining_s": round(state.ban_remaining_s, 1),
            "pending_skus": state.pending_skus,
            "oldest_pending_age_s": round(state.oldest_pending_age_s, 1),
            "taobao_session": {
                "ok": session_ok,
                "detail": "" if session_ok else (client.last_auth_failure or "no token"),
            },
            "first_pass_done": state.first_pass_done,
        }


class HealthServer:
    """The aiohttp server for the three endpoints, on the connector's own event loop."""

    def __init__(self, readiness: Readiness, registry: Any, *, host: str, port: int) -> None:
        self._readiness = readiness
        self._registry = registry
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port = port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, _: web.Request) -> web.Response:
        checks = await self._readiness.checks()
        ready = all(c.ok for c in checks)
        body = {
            "ready": ready,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
            "projection": self._readiness.projection(),
        }
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        payload = await asyncio.to_thread(generate_latest, self._registry)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})
