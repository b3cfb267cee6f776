"""Start ``turnout gateway`` as a child process, beside a running stack (tests, benchmarks).

The same command production runs; the child's settings come from the environment
(``TURNOUT_CONFIG``, ``TURNOUT_KAFKA__BOOTSTRAP_SERVERS``, ``TURNOUT_GATEWAY__*``), and it
dies with its parent.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from turnout.embedded import die_with_parent, free_port, stop_process, wait_for_port


@contextlib.contextmanager
def running_gateway(env: dict[str, str], log_path: Path, *, start_timeout_s: float = 60.0) -> Iterator[str]:
    """A gateway on a free loopback port; yields its base URL (``http://127.0.0.1:<port>/v1``).
    It listens only once its reply topic is ready, so the first call is answered."""
    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "turnout", "gateway", "--host", "127.0.0.1", "--port", str(port)],
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
    try:
        wait_for_port(port, start_timeout_s, process, f"the gateway (log: {log_path})")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process(process, 15.0)
