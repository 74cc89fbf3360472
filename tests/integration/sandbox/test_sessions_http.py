"""The sandbox's session variants, over HTTP: fixed-length tokens and write permission that
lapses before the session (reference §4.2-§4.3)."""

from __future__ import annotations

import time

import httpx
import pytest

from connector.sandbox import SandboxConfig, SandboxServer
from tests.integration.sandbox.test_gateway import CONFIG, MUG, call, error, ok

pytestmark = pytest.mark.integration


def test_fixed_length_tokens_are_never_refreshed() -> None:
    config = SandboxConfig(**{**vars(CONFIG), "refreshable": False})
    with SandboxServer(config) as sandbox, httpx.Client(timeout=5) as http:
        answer = http.post(
            sandbox.token_url,
            data={
                "grant_type": "refresh_token",
                "refresh_token": config.refresh_token,
                "client_id": config.app_key,
                "client_secret": config.app_secret,
            },
        )
        assert answer.status_code == 400
        assert answer.json()["error"] == "invalid_grant"
        assert "固定时长token" in answer.json()["error_description"]
        refused = error(
            call(sandbox, http, "taobao.top.auth.token.refresh", refresh_token=config.refresh_token)
        )
        assert refused["sub_code"] == "isv.invalid-parameter:refresh_token"


def test_a_lapsed_write_permission_refuses_writes_and_lets_reads_go_on() -> None:
    config = SandboxConfig(**{**vars(CONFIG), "write_ttl_s": 0.3})
    with SandboxServer(config) as sandbox, httpx.Client(timeout=5) as http:
        update = "taobao.item.quantity.update"
        ok(call(sandbox, http, update, num_iid=str(MUG), quantity="5"), update)
        time.sleep(0.4)
        refused = error(call(sandbox, http, update, num_iid=str(MUG), quantity="6"))
        assert refused["code"] == 27 and "w1_expires_in" in refused["sub_msg"]
        read = "taobao.item.seller.get"
        ok(call(sandbox, http, read, num_iid=str(MUG), fields="num"), read)
