"""The seller's session shared by replicas through Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from connector.errors import TaobaoSessionError
from connector.keys import Keys
from connector.sandbox.server import SandboxServer
from connector.taobao.client import TopClient
from connector.taobao.tokens import RedisTokenStore, TokenGrant
from tests.conftest import SandboxFactory
from tests.helpers import admin, calls

pytestmark = pytest.mark.integration

MUG = 600000000003
REFRESH = "taobao.top.auth.token.refresh"
MakeClient = Callable[..., TopClient]


async def test_replicas_refresh_an_expired_session_once(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    replicas = [make_client(sandbox) for _ in range(4)]
    await asyncio.gather(*(r.get_item(MUG) for r in replicas))
    admin(sandbox, "POST", "/sandbox/tokens/expire")

    items = await asyncio.gather(*(r.get_item(MUG) for r in replicas))

    assert all(i.num == 60 for i in items)
    # One refresh for everyone (Redis lock), through the documented API.
    assert len(calls(sandbox, REFRESH)) == 1
    assert calls(sandbox, "/token") == []


async def test_refreshed_token_outlives_a_restart(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    await make_client(sandbox).get_item(MUG)
    admin(sandbox, "POST", "/sandbox/tokens/expire")
    await make_client(sandbox).get_item(MUG)  # refreshes; the old refresh token is now spent

    # A restarted replica with the same (old) configuration uses the token in Redis.
    restarted = make_client(sandbox)
    assert (await restarted.get_item(MUG)).num == 60
    assert len(calls(sandbox, REFRESH)) == 1


async def test_a_newly_configured_session_replaces_the_stored_one(
    sandbox: SandboxServer, make_client: MakeClient, redis: Redis, keys: Keys
) -> None:
    store = RedisTokenStore(redis, keys, sandbox.config.app_key)
    await store.save(
        TokenGrant(SecretStr("stale-token-from-before"), SecretStr("stale-refresh"), None),
        seed="an-older-seed",
    )

    # The operator configured the sandbox's current session: it wins over Redis.
    assert (await make_client(sandbox).get_item(MUG)).num == 60
    stored = await store.load()
    assert stored is not None
    assert stored.access_token.get_secret_value() == sandbox.config.session


async def test_spent_refresh_token_tells_the_operator_to_reauthorise(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    client = make_client(sandbox, refresh_token="not-a-refresh-token")
    await client.get_item(MUG)
    admin(sandbox, "POST", "/sandbox/tokens/expire")

    with pytest.raises(TaobaoSessionError, match="authorize the app again") as info:
        await client.get_item(MUG)
    assert "not-a-refresh-token" not in str(info.value)


async def test_the_oauth_route_refreshes_when_chosen(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    client = make_client(sandbox, token_refresh="oauth")
    await client.get_item(MUG)
    admin(sandbox, "POST", "/sandbox/tokens/expire")
    assert (await client.get_item(MUG)).num == 60
    assert len(calls(sandbox, "/token")) == 1
    assert calls(sandbox, REFRESH) == []


async def test_a_refreshed_token_keeps_its_refresh_and_write_expiries(
    sandbox: SandboxServer, make_client: MakeClient
) -> None:
    client = make_client(sandbox)
    await client.get_item(MUG)
    admin(sandbox, "POST", "/sandbox/tokens/expire")
    await client.get_item(MUG)
    expiry = client.session_expiry()
    assert expiry is not None and expiry.refreshable is True and expiry.has_refresh
    assert expiry.session_at and expiry.write_at and expiry.refresh_at
    assert expiry.session_at < expiry.refresh_at


async def test_fixed_length_tokens_are_reported_as_such(
    sandbox_factory: SandboxFactory, make_client: MakeClient
) -> None:
    sandbox = sandbox_factory(refreshable=False)
    client = make_client(sandbox)
    await client.get_item(MUG)
    admin(sandbox, "POST", "/sandbox/tokens/expire")
    with pytest.raises(TaobaoSessionError, match="fixed-length") as info:
        await client.get_item(MUG)
    assert sandbox.config.refresh_token not in str(info.value)
