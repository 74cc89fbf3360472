"""Throughput of the sandbox TOP gateway.

Starts ``python -m connector.sandbox`` on a free port in a subprocess, then drives it from this
process with a lean asyncio load generator: raw keep-alive HTTP/1.1 over N connections,
md5-signed ``taobao.item.quantity.update`` full updates alternating with
``taobao.item.seller.get`` reads. Bounded by time and by call count. Prints calls/s,
p50/p95/p99 latency and the error count.

    .venv/bin/python bench/sandbox_throughput.py --seconds 5 --connections 16
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from connector.taobao.protocol import format_timestamp
from connector.taobao.signing import sign

__all__ = ["main"]

APP_KEY = "bench-app-key"
APP_SECRET = "bench-app-secret"
SESSION = "bench-session"
# Demo catalog targets: on-sale, unlocked, so full updates with quantity >= 1 always succeed.
SKU_TARGETS = [
    (600000000001, 700000000011),
    (600000000001, 700000000012),
    (600000000002, 700000000021),
]
ITEM_TARGETS = [600000000001, 600000000002, 600000000003]
REPO_ROOT = Path(__file__).resolve().parent.parent
_LISTEN_RE = re.compile(r"gateway http://([^\s/]+):(\d+)/router/rest")


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    remaining: int = 0


class Clock:
    """The signed timestamp, formatted once per second rather than per request."""

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def text(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second, self._text = second, format_timestamp(datetime.now(UTC))
        return self._text


def build_body(n: int, clock: Clock, rng: random.Random) -> bytes:
    params = {
        "app_key": APP_KEY,
        "session": SESSION,
        "timestamp": clock.text(),
        "v": "2.0",
        "format": "json",
        "sign_method": "md5",
    }
    if n % 2 == 0:
        num_iid, sku_id = rng.choice(SKU_TARGETS)
        params |= {
            "method": "taobao.item.quantity.update",
            "num_iid": str(num_iid),
            "sku_id": str(sku_id),
            "quantity": str(rng.randint(1, 500)),
            "type": "1",
        }
    else:
        params |= {
            "method": "taobao.item.seller.get",
            "num_iid": str(rng.choice(ITEM_TARGETS)),
            "fields": "num_iid,num,approve_status,modified,sku",
        }
    params["sign"] = sign(params, APP_SECRET, "md5")
    return urlencode(params).encode()


async def worker(host: str, port: int, deadline: float, stats: Stats, seed: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    rng = random.Random(seed)
    clock = Clock()
    head = f"POST /router/rest HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += "Content-Type: application/x-www-form-urlencoded\r\n"
    n = seed
    try:
        while stats.remaining > 0 and time.monotonic() < deadline:
            stats.remaining -= 1
            body = build_body(n, clock, rng)
            n += 1
            started = time.perf_counter()
            writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status, data = await read_response(reader)
            stats.latencies.append(time.perf_counter() - started)
            if status != 200 or b'"error_response"' in data:
                stats.errors += 1
                stats.first_error = stats.first_error or f"{status} {data[:200]!r}"
    finally:
        writer.close()
        await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return status, await reader.readexactly(length)


def start_sandbox() -> tuple[subprocess.Popen[str], str, int]:
    command = [
        sys.executable,
        "-m",
        "connector.sandbox",
        "--port",
        "0",
        "--app-key",
        APP_KEY,
        "--app-secret",
        APP_SECRET,
        "--session",
        SESSION,
    ]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = _LISTEN_RE.search(line)
    if match is None:
        proc.kill()
        raise SystemExit(f"the sandbox did not start: {line!r}")
    return proc, match.group(1), int(match.group(2))


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


async def run(host: str, port: int, seconds: float, connections: int, max_calls: int) -> None:
    stats = Stats(remaining=max_calls)
    # Warm-up: a few calls per connection so imports and caches are hot before timing.
    warm = Stats(remaining=connections * 20)
    await asyncio.gather(
        *(worker(host, port, time.monotonic() + 2, warm, i) for i in range(connections))
    )
    started = time.perf_counter()
    deadline = time.monotonic() + seconds
    await asyncio.gather(
        *(worker(host, port, deadline, stats, i * 1_000_003) for i in range(connections))
    )
    elapsed = time.perf_counter() - started
    lat = sorted(stats.latencies)
    calls = len(lat)
    print(f"connections      {connections}")
    print(f"calls            {calls} in {elapsed:.2f} s")
    print(f"throughput       {calls / elapsed:.0f} calls/s")
    for name, fraction in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        print(f"latency {name}      {percentile(lat, fraction) * 1000:.2f} ms")
    print(
        f"errors           {stats.errors}"
        + (f"  first: {stats.first_error}" if stats.errors else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections")
    parser.add_argument("--max-calls", type=int, default=1_000_000, help="stop after this many")
    args = parser.parse_args()
    proc, host, port = start_sandbox()
    try:
        print(f"sandbox          pid {proc.pid} on {host}:{port}")
        asyncio.run(run(host, port, args.seconds, args.connections, args.max_calls))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
