"""Opening the Redis connection from settings, translating failures into clear errors."""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, AuthorizationError, RedisError, ResponseError

from connector.errors import ConfigError, DependencyError
from connector.settings import RedisSettings

__all__ = ["AsyncRedis", "connect_redis"]

AsyncRedis: TypeAlias = Redis


async def connect_redis(settings: RedisSettings) -> AsyncRedis:
    """Connect and ping once, so a wrong ``REDIS_URL`` fails at start with one message:
    ``ConfigError`` when the server refuses (credentials, ACLs), ``DependencyError`` when
    it cannot be reached (the caller may wait for it)."""
    client: AsyncRedis = Redis.from_url(
        settings.url.get_secret_value(),
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.socket_timeout_s,
        health_check_interval=30,
    )
    try:
        await client.ping()
    except (AuthenticationError, AuthorizationError, ResponseError) as exc:
        # The server answered and refused: waiting cannot help, the setting must change.
        await client.aclose()
        raise ConfigError(
            f"Redis at REDIS_URL refused the connection ({type(exc).__name__}: {exc}); "
            "check the password, user and ACLs in REDIS_URL"
        ) from None
    except RedisError as exc:
        await client.aclose()
        # The URL may carry a password: name the variable, not its value.
        raise DependencyError(
            f"cannot reach Redis at REDIS_URL ({type(exc).__name__}: {exc}); "
            "check the URL, the server and any password or TLS settings"
        ) from None
    return client
