"""Small helpers for talking to the sandbox gateway's admin endpoints in tests."""

from __future__ import annotations

from typing import Any

import httpx

from connector.sandbox.server import SandboxServer


def admin(sandbox: SandboxServer, method: str, path: str, json: Any = None) -> Any:
    response = httpx.request(method, f"{sandbox.url}{path}", json=json, timeout=5)
    response.raise_for_status()
    return response.json()


def set_faults(sandbox: SandboxServer, faults: dict[str, Any]) -> None:
    admin(sandbox, "POST", "/sandbox/faults", faults)


def calls(sandbox: SandboxServer, method: str | None = None) -> list[dict[str, Any]]:
    """The gateway's call log, optionally for one API method (``/token`` for the token URL)."""
    logged: list[dict[str, Any]] = admin(sandbox, "GET", "/sandbox/calls")["calls"]
    return [c for c in logged if method is None or c["method"] == method]


def api_calls(sandbox: SandboxServer) -> list[dict[str, Any]]:
    return [c for c in calls(sandbox) if c["method"].startswith("taobao.")]


def state_item(sandbox: SandboxServer, num_iid: int) -> dict[str, Any]:
    items = admin(sandbox, "GET", "/sandbox/state")["items"]
    return next(i for i in items if i["num_iid"] == num_iid)
