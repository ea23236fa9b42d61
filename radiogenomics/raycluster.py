"""Connecting to Ray: a cluster by address, or a local Ray that stays on 127.0.0.1.

A local Ray binds the machine's external address by default; RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
makes it bind and use loopback only, which is what a workstation or CI run wants.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from collections.abc import Iterator

LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def keep_local_ray_on_loopback() -> None:
    """Make a Ray started from this process bind 127.0.0.1 (call before ray.init)."""
    for key, value in LOOPBACK_ENV.items():
        os.environ.setdefault(key, value)


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None,
                metrics_export_port: int | None = None) -> Iterator[None]:
    """Use the running Ray if there is one; else join `address`, or start a new local Ray on loopback.

    No address always means a new local Ray (Ray's `address="local"`): never a cluster that another
    program started on this machine, nor a dead one whose address Ray left in
    `/tmp/ray/ray_current_cluster` (which plain `ray.init()` would try to join, retrying for good).
    A Ray started here is shut down on exit; one that was already running is left alone.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    if address is None:
        keep_local_ray_on_loopback()
    extra = {"_metrics_export_port": metrics_export_port} if metrics_export_port and not address else {}
    ray.init(address=address or "local", num_cpus=None if address else num_cpus, include_dashboard=False,
             logging_level="ERROR", log_to_driver=False, **extra)
    try:
        yield
    finally:
        ray.shutdown()


def _missing(paths: list[str]) -> list[str]:
    return [p for p in paths if not os.path.exists(p)]


def check_visible_on_every_node(paths: list[str], what: str) -> None:
    """Refuse a cluster job whose input files some node cannot see, before any work starts.

    Tasks read their inputs where they run: a path on the submitting machine's local disk, absent
    on another node, would fail there case by case. One zero-CPU task per alive node looks; the
    error names the first node and path that failed. Only paths this (the submitting) machine
    sees are checked: a file missing everywhere stays the failure of its own case. On a single node
    it is a no-op.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from radiogenomics.errors import InputError

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    paths = sorted({str(p) for p in paths if os.path.exists(p)})
    if len(nodes) < 2 or not paths:
        return
    look = ray.remote(num_cpus=0, max_retries=0)(_missing)
    checks = {n["NodeManagerAddress"] + " (node " + n["NodeID"][:12] + ")": look.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(paths) for n in nodes}
    for node, ref in checks.items():
        missing = ray.get(ref, timeout=120)
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise InputError(f"{what} {missing[0]}{more} is not visible on Ray node {node}; put the inputs on "
                             "storage every node mounts at the same path (e.g. /data)")
