"""``taobao-connector check``: prove the configuration works before deploying it.

Reaches the broker, connects to Redis, obtains the seller's session (refreshing it if
needed) and makes one read-only TOP call. Each failure is one line naming what to fix.
"""

from __future__ import annotations

import asyncio
import sys

from connector.kafka_io import check_broker
from connector.keys import Keys
from connector.redis_client import connect_redis
from connector.settings import Settings
from connector.taobao.client import TopClient, build_http_client

__all__ = ["run_check"]


async def run_check(settings: Settings) -> int:
    await asyncio.to_thread(check_broker, settings.kafka)
    print("kafka: ok", file=sys.stderr)
    redis = await connect_redis(settings.redis)
    try:
        print("redis: ok", file=sys.stderr)
        async with build_http_client(settings.taobao) as http:
            client = TopClient.from_settings(
                settings.taobao, redis=redis, keys=Keys(settings.redis.key_prefix), http=http
            )
            async for _ in client.iter_onsale(page_size=1):
                break
            print(f"taobao: ok (gateway {settings.taobao.gateway_url})", file=sys.stderr)
    finally:
        await redis.aclose()
    return 0
