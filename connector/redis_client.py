"""Opening the Redis connection from settings, translating failures into clear errors."""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import Redis
from redis.exceptions import RedisError

from connector.errors import DependencyError
from connector.settings import RedisSettings

__all__ = ["AsyncRedis", "connect_redis"]

AsyncRedis: TypeAlias = Redis


async def connect_redis(settings: RedisSettings) -> AsyncRedis:
    """Connect and ping once, so a wrong ``REDIS_URL`` fails at start with one message."""
    client: AsyncRedis = Redis.from_url(
        settings.url.get_secret_value(),
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        health_check_interval=30,
    )
    try:
        await client.ping()
    except RedisError as exc:
        await client.aclose()
        # The URL may carry a password: name the variable, not its value.
        raise DependencyError(
            f"cannot reach Redis at REDIS_URL ({type(exc).__name__}: {exc}); "
            "check the URL, the server and any password or TLS settings"
        ) from None
    return client
