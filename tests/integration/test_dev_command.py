"""`turnout dev` starts the whole embedded stack and Ctrl-C stops all of it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

CONFIG = Path(__file__).with_name("stack.toml")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_stops_every_process_it_started(tmp_path):
    dev = subprocess.Popen(
        [sys.executable, "-m", "turnout", "dev", "--config", str(CONFIG), "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = dev.stdout.readline()
        assert "Turnout dev stack" in banner, banner + dev.stdout.read()
        assert "127.0.0.1:" in banner
        time.sleep(1)  # let every child get past its imports
        started = descendants(dev.pid)
        assert len(started) >= 6, "broker, simulator, sink, router and a worker per model"
        assert all(alive(pid) for pid in started), "no child died at start-up"

        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=90) == 0
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in started if alive(pid)] == []
    finally:
        if dev.poll() is None:
            dev.kill()
