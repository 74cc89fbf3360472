"""``taobao-connector run``: the connector as a long-running service.

Tracing and metrics providers, the health and metrics endpoints, signal handling and a
shutdown bounded by the pod's grace period, around ``connector.app.Connector``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

from connector.retrying import Startup, Stopped
from connector.service.app import Connector
from connector.service.health import HealthServer, Readiness
from connector.settings import Settings
from connector.telemetry import get_tracer, setup_metrics, setup_tracing

__all__ = ["run_connector"]

log = logging.getLogger(__name__)


async def run_connector(settings: Settings, env: Mapping[str, str]) -> int:
    """``taobao-connector run``: until SIGTERM or SIGINT, then finish the batch and exit.

    After the signal, fetching stops, the batch in hand is finished and committed, and the
    process exits; if that takes longer than ``CONNECTOR_SHUTDOWN_TIMEOUT_S`` the batch is
    abandoned uncommitted (it replays, and the ledger de-duplicates it) so the pod never
    outlives its grace period.
    """
    provider = setup_tracing(env, default_service="taobao-connector")
    meter_provider, registry = setup_metrics()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _request_stop, sig, stop, settings.runtime.shutdown_timeout_s)
    runtime = settings.runtime
    startup = Startup()
    readiness = Readiness(None, stall_timeout_s=runtime.stall_timeout_s, startup=startup)
    health: HealthServer | None = None
    connector: Connector | None = None
    try:
        if runtime.http_port:
            # First: /healthz answers and /readyz says what start-up waits for.
            health = HealthServer(
                readiness, registry, host=runtime.http_host, port=runtime.http_port
            )
            await health.start()
        try:
            connector = await Connector.start(
                settings,
                tracer=get_tracer(provider),
                meter_provider=meter_provider,
                startup=startup,
                stop=stop,
            )
        except Stopped:
            log.info("stopped while starting")
            return 0
        readiness.attach(connector)
        log.info(
            "consuming %s and %s as group %s; health and metrics on :%s",
            settings.kafka.orders_topic,
            settings.kafka.warehouse_topic,
            settings.kafka.group_id,
            health.port if health else "-",
        )
        await _run_until_stopped(connector, stop, runtime.shutdown_timeout_s)
    finally:
        if health is not None:
            await health.stop()
        if connector is not None:
            await connector.aclose()
        meter_provider.shutdown()
        if provider is not None:
            provider.shutdown()
    log.info("stopped")
    return 0


def _request_stop(sig: signal.Signals, stop: asyncio.Event, timeout_s: float) -> None:
    # Logged here, at the signal, rather than after the loop notices it: the loop may
    # finish its batch and return in the same turn, and the log must say why it stopped.
    if not stop.is_set():
        log.info(
            "%s: shutting down, finishing the batch in hand (at most %.0fs)", sig.name, timeout_s
        )
    stop.set()


async def _run_until_stopped(connector: Connector, stop: asyncio.Event, timeout_s: float) -> None:
    task = asyncio.create_task(connector.run(stop))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        stopping.cancel()
        task.result()  # the loop ended on its own: surface why
        return
    try:
        await asyncio.wait_for(task, timeout=timeout_s)
    except TimeoutError:
        log.warning(
            "shutdown timed out: an uncommitted batch replays on another replica, and a Taobao "
            "push cut short stays pending"
        )
