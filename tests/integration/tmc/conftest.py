"""What the message-service bridge's integration tests share: a sandbox whose unconfirmed
messages come back quickly, the pipeline harness, a fast-polling bridge, and waiting for a
listing's first push (absolute: it starts the listing's base)."""

from __future__ import annotations

import asyncio

import pytest

from connector.errors import LedgerLost
from connector.sandbox.server import SandboxServer
from connector.service.app import Connector
from connector.settings import KafkaSettings
from tests.conftest import SandboxFactory
from tests.pipeline_harness import Harness, wait_for

MUG = 600000000003  # MUG-WHITE: 60 on Taobao, stock deducted on order (sub_stock 1)
FAST = {"tmc_enabled": True, "tmc_poll_s": 0.05, "tmc_idle_max_s": 0.2}


@pytest.fixture
def sandbox(sandbox_factory: SandboxFactory) -> SandboxServer:
    return sandbox_factory(tmc_visibility_s=2.0)


@pytest.fixture
def harness(kafka_settings: KafkaSettings, sandbox: SandboxServer, redis_url: str) -> Harness:
    return Harness(kafka_settings, sandbox, redis_url)


async def first_push(connector: Connector, code: str = "MUG-WHITE", num_iid: int = MUG) -> None:
    """The listing's first push has landed, and its second has passed: an order in the same
    (whole) second as an absolute write counts as before it (connector/push/bases.py),
    which leaves Taobao showing it less until the listing is re-anchored."""

    async def based() -> bool:
        try:
            stock = await connector.ledger.stock([code])
        except LedgerLost:  # (the marker is written once the consumer has its partitions)
            return False
        return f"{num_iid}:" in stock[code].bases

    await wait_for(based, what="the listing's first push")
    await asyncio.sleep(1.1)
