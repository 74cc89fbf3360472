"""The sandbox's daily quota and bans by scope, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from connector.sandbox import SandboxConfig, SandboxServer
from tests.integration.sandbox.test_gateway import CONFIG, MUG, call, error, ok

pytestmark = pytest.mark.integration

GET, UPDATE = "taobao.item.seller.get", "taobao.item.quantity.update"


@pytest.fixture
def quota_sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(**{**vars(CONFIG), "daily_quota": 3})
    with SandboxServer(config) as server:
        yield server


def test_the_daily_quota_is_refused_with_code_7_until_midnight(
    quota_sandbox: SandboxServer,
) -> None:
    with httpx.Client(timeout=5) as http:
        for _ in range(3):
            ok(call(quota_sandbox, http, GET, num_iid=str(MUG), fields="num"), GET)
        refused = error(call(quota_sandbox, http, GET, num_iid=str(MUG), fields="num"))
        state = http.get(f"{quota_sandbox.url}/sandbox/state").json()
    assert refused["code"] == 7
    assert refused["sub_code"] == "accesscontrol.limited-by-app-access-count"
    assert "This ban will last for" in refused["sub_msg"]
    assert state["daily_quota"] == {"limit": 3, "used_today": 3}


def test_a_ban_of_one_api_leaves_the_others_alone() -> None:
    with SandboxServer(CONFIG) as sandbox, httpx.Client(timeout=5) as http:
        answer = http.post(
            f"{sandbox.url}/sandbox/ban",
            json={"seconds": 30, "scope": "api", "method": UPDATE},
        )
        assert answer.status_code == 200, answer.text
        refused = error(call(sandbox, http, UPDATE, num_iid=str(MUG), quantity="5"))
        assert (refused["code"], refused["sub_code"]) == (
            7,
            "accesscontrol.limited-by-api-access-count",
        )
        ok(call(sandbox, http, GET, num_iid=str(MUG), fields="num"), GET)
        bad = http.post(f"{sandbox.url}/sandbox/ban", json={"seconds": 5, "scope": "api"})
        assert bad.status_code == 400 and "name it" in bad.json()["error"]
