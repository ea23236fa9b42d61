"""Without --address every command starts its own local Ray: never another program's cluster on
this machine, never a dead one whose address Ray left behind in its temp folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPT = """
import ray
from radiogenomics.raycluster import ray_session
with ray_session(num_cpus=1):
    print(ray.get(ray.remote(lambda: 41).remote()) + 1, ray.get_runtime_context().gcs_address)
"""


def _run(env: dict[str, str]) -> list[str]:
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1].split()


def test_a_stale_cluster_file_is_not_joined() -> None:
    """A cluster that died without a clean shutdown leaves `ray_current_cluster` naming its dead GCS;
    plain `ray.init()` retries it for good. Ours starts a new local Ray and finishes."""
    root = Path(tempfile.mkdtemp(prefix="rg", dir="/tmp"))  # short: Ray's socket paths live under it
    try:
        (root / "ray").mkdir()
        (root / "ray" / "ray_current_cluster").write_text("127.0.0.1:9\n")  # nothing listens there
        answer, gcs = _run({**os.environ, "RAY_TMPDIR": str(root)})
        assert answer == "42" and not gcs.endswith(":9")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_live_cluster_on_the_machine_is_not_joined(ray_local) -> None:
    """The test session's own Ray is running on this machine; a command without --address must not join it."""
    answer, gcs = _run(dict(os.environ))
    assert answer == "42" and gcs != ray_local.get_runtime_context().gcs_address
