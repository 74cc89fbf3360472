"""The README's first command: the demo plays its story and Taobao ends up agreeing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_the_demo_converges_and_says_so(broker: str, redis_url: str) -> None:
    # The session's broker and Redis stand in for the embedded ones the demo would start.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_"))}
    env |= {"KAFKA_BOOTSTRAP_SERVERS": broker, "REDIS_URL": redis_url}

    result = subprocess.run(
        [sys.executable, "-m", "connector", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "Taobao agrees with the ledger for every listed merchant code it accepts." in result.stderr
    )
    assert "Taobao refused JACKET-BLACK-M" in result.stderr  # the campaign lock: parked
    assert "1 rejected" in result.stderr
    assert "11 duplicate" in result.stderr
