"""Processes a test started, found and stopped by pid (never by name): trees, listening ports."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from services.procfs import process_tree  # shared with the benchmarks


def listeners() -> dict[int, set[int]]:
    """TCP port -> pids of the processes listening on it (from /proc/net and each process's fds)."""
    inodes: dict[str, int] = {}
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A":  # LISTEN
                inodes[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    ports: dict[int, set[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:
            continue
        for link in links:
            if link.startswith("socket:[") and link[8:-1] in inodes:
                ports.setdefault(inodes[link[8:-1]], set()).add(int(entry.name))
    return ports


def alive(pid: int, cmdline: bytes) -> bool:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes() == cmdline and cmdline != b""
    except OSError:
        return False


def stop_tree(root: int, timeout_s: float = 30.0) -> dict[int, bytes]:
    """SIGTERM `root` and every descendant, then SIGKILL what is left; returns what was still alive."""
    tree = {root: (Path("/proc") / str(root) / "cmdline").read_bytes() if Path(f"/proc/{root}").exists() else b""}
    tree.update(process_tree(root))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, cmd in tree.items():
            if alive(pid, cmd):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout_s / 2
        while time.monotonic() < deadline and any(alive(pid, cmd) for pid, cmd in tree.items()):
            time.sleep(0.2)
    return {pid: cmd for pid, cmd in tree.items() if alive(pid, cmd)}


def ready_line(proc: subprocess.Popen, wait_s: float = 120.0) -> str:
    """The first stdout line of a server started with text pipes (its ready line).

    An empty read means the server closed stdout, i.e. it is exiting: wait for it and fail with
    its exit code and the tail of its stderr, the one line that says why (polling at once races
    the exit and loses the message).
    """
    line = proc.stdout.readline()
    if line:
        return line
    try:
        _, err = proc.communicate(timeout=wait_s)  # drains stderr, which a wait alone could leave full
    except subprocess.TimeoutExpired:
        raise AssertionError(f"no ready line: stdout closed, still running after {wait_s:.0f} s") from None
    raise AssertionError(f"no ready line; exit code {proc.returncode}; stderr:\n{err[-3000:]}")
