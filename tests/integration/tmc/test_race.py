"""The deduction race: Taobao sells on its own while other events push the same SKU.

Taobao deducts its own orders before the ledger hears of them (through TMC and the bridge).
A push computed from the ledger in that moment must not write those units back: sampled
continuously, Taobao never shows more than the real stock (every receipt produced, every
Taobao order placed), and it converges to the ledger's figure.

Real broker, real Redis-compatible server, the sandbox over HTTP.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from connector.contracts.events import WarehouseType
from connector.sandbox.server import SandboxServer
from tests.helpers import admin
from tests.integration.tmc.conftest import FAST, MUG, first_push
from tests.pipeline_harness import Harness, count, move, wait_for

pytestmark = pytest.mark.integration


def shown(sandbox: SandboxServer) -> int:
    items = admin(sandbox, "GET", "/sandbox/state")["items"]
    return int(next(i["num"] for i in items if i["num_iid"] == MUG))


class Race:
    """Counts what really happened, to bound what Taobao may show at any moment."""

    def __init__(self) -> None:
        self.sold = 0  # Taobao orders answered (Taobao deducted them)
        self.received = 0  # receipts produced (real stock, whether the ledger has it yet)
        self.worst = -(10**9)  # max over samples of shown - (what may be shown)
        self.samples = 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def sample(self, sandbox: SandboxServer) -> None:
        while not self.done.is_set():
            with self.lock:
                sold = self.sold  # answered before the read: surely deducted
            now_shown = shown(sandbox)
            with self.lock:
                received = self.received  # counted before produced: an upper bound
            self.worst = max(self.worst, now_shown - (60 + received - sold))
            self.samples += 1
            time.sleep(0.03)


async def test_taobao_never_shows_units_it_already_sold_while_other_events_push(
    harness: Harness, sandbox: SandboxServer
) -> None:
    async with harness.running(taobao=FAST) as connector:
        harness.produce([count("MUG-WHITE", 60)])
        # The first push of a listing is absolute and starts its base; from then on,
        # increments.
        await first_push(connector)
        race = Race()
        sampler = threading.Thread(target=race.sample, args=(sandbox,), daemon=True)
        sampler.start()

        async def taobao_sells() -> None:
            for _ in range(40):
                await asyncio.to_thread(
                    admin, sandbox, "POST", "/sandbox/orders", {"num_iid": MUG, "quantity": 1}
                )
                with race.lock:
                    race.sold += 1
                await asyncio.sleep(0.05)

        async def warehouse_receives() -> None:
            for i in range(20):
                # Counted before it is produced: real stock from the moment it exists.
                with race.lock:
                    race.received += 1
                receipt = move(f"rcv-{i}", WarehouseType.RECEIVED, "MUG-WHITE", 1, at=10 + i)
                await asyncio.to_thread(harness.produce, [receipt])
                await asyncio.sleep(0.1)

        try:
            await asyncio.gather(taobao_sells(), warehouse_receives())
            seen: list[tuple[int, int]] = []

            async def converged() -> bool:
                stock = (await connector.ledger.stock(["MUG-WHITE"]))["MUG-WHITE"]
                seen.append((stock.available, shown(sandbox)))
                return seen[-1] == (40, 40)

            try:
                await wait_for(converged, timeout_s=30, what="the ledger and Taobao at 40")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; (ledger, Taobao) last: {seen[-3:]}") from None
        finally:
            race.done.set()
            sampler.join(5)
    assert race.samples > 20
    assert race.worst <= 0, f"Taobao showed {race.worst} units more than there were"
