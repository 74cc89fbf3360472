"""``taobao-connector check``: prove the configuration works before deploying it.

Reaches the broker, connects to Redis, obtains the seller's session (refreshing it if
needed) and makes one read-only TOP call. Every dependency is tried, so one run shows
every problem: a line each, naming what to fix. Taobao needs Redis (tokens and the call
budget live there), so it is skipped when Redis is not reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator

from connector.errors import ConfigError, ConnectorError, DependencyError, redact
from connector.kafka import check_broker, check_topics
from connector.keys import Keys
from connector.redis_client import AsyncRedis, connect_redis
from connector.settings import Settings
from connector.taobao.client import TopClient, build_http_client

__all__ = ["run_check"]


async def run_check(settings: Settings) -> int:
    """0 when the broker, Redis and Taobao all answered; 1 otherwise."""
    secrets = settings.secret_values()
    failed: list[str] = []
    with _checking("kafka", secrets, failed):
        await asyncio.to_thread(check_broker, settings.kafka)
        try:
            await asyncio.to_thread(check_topics, settings.kafka)
        except ConfigError as exc:
            # The broker answered: a missing topic is this dependency's failure, and the
            # other checks still run.
            raise DependencyError(str(exc)) from exc
        _say("kafka: ok")
    redis: AsyncRedis | None = None
    with _checking("redis", secrets, failed):
        redis = await connect_redis(settings.redis)
        _say("redis: ok")
    if redis is None:
        _say("taobao: not checked (needs Redis for the session and the call budget)")
        return 1
    try:
        with _checking("taobao", secrets, failed):
            await _check_taobao(settings, redis)
            _say(f"taobao: ok (gateway {settings.taobao.gateway_url})")
    finally:
        await redis.aclose()
    return 1 if failed else 0


@contextlib.contextmanager
def _checking(what: str, secrets: list[str], failed: list[str]) -> Iterator[None]:
    """One dependency's check: its failure is a line and the run goes on."""
    try:
        yield
    except ConfigError:
        raise  # a setting to fix: the command's usual one line and exit code 2
    except ConnectorError as exc:
        _say(f"{what}: FAILED: {redact(str(exc), secrets)}")
        failed.append(what)


async def _check_taobao(settings: Settings, redis: AsyncRedis) -> None:
    async with build_http_client(settings.taobao) as http:
        client = TopClient.from_settings(
            settings.taobao, redis=redis, keys=Keys(settings.redis.key_prefix), http=http
        )
        async for _ in client.iter_onsale(page_size=1):
            break


def _say(line: str) -> None:
    print(line, file=sys.stderr)
