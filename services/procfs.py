"""Processes as Linux's /proc shows them: a process's descendants, and the CPU time one has used.

Shared by the tests (which stop what they start by pid, never by name) and the benchmarks (which
charge CPU time per request to each process of the app).
"""

from __future__ import annotations

import os
from pathlib import Path


def process_tree(root: int) -> dict[int, bytes]:
    """Every live descendant of `root`: pid -> command line (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                try:
                    tree[pid] = (Path("/proc") / str(pid) / "cmdline").read_bytes()
                except OSError:
                    continue
                frontier.append(pid)
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) `pid` has used so far; 0 once it is gone."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
