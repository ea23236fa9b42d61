"""How gRPC reaches the app: Serve's HAProxy ingress (the default) or its classic Python proxy.

With HAProxy (Ray's `RAY_SERVE_ENABLE_HA_PROXY=1`), an HAProxy process on each node listens on
the gRPC port and forwards each call straight to a gateway replica's own gRPC server ("direct
ingress"), balancing across replicas: no Python proxy and no router hop on the request path.
Ray configures all of this from environment variables that Serve's controller, proxy manager and
replicas read when they start, so the variables must be in the environment of the processes that
start Ray: for a local Ray, this process before `ray.init`; on a cluster, every `ray start`
(the compose and KubeRay files set them).

Ray's defaults for HAProxy suit one Serve per machine behind a cloud load balancer, not a
workstation or a CI machine that may run several: fixed stats, metrics and fallback-proxy ports
(8404, 9101, 8500, 9500), files under a shared /tmp/haproxy-serve, and ingress replicas that hold
on for 30 s at shutdown so an external balancer can deregister them (why `serve` used to take
30 s and more to stop). `haproxy_environment` gives a run its own free ports and folder and a
short drain (HAProxy itself retries a refused connection on the next replica);
`reap_haproxy` stops, by pid, any HAProxy of that folder that outlived Ray (HAProxy is a
child of Serve's proxy-manager actor, which Ray kills without a signal to its children).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

INGRESS_ENV = "RADIOGENOMICS_INGRESS"
INGRESSES = ("haproxy", "proxy")
DEFAULT_INGRESS = "haproxy"
HAPROXY_FLAG = "RAY_SERVE_ENABLE_HA_PROXY"
#: Seconds an ingress replica keeps serving after it is told to stop (Ray's default: 30).
DRAIN_S = 2
#: HAProxy's HTTP/2 buffers for our messages (a profile is 87 KB, a stream chunk of 100 is 8.7 MB):
#: Ray's defaults (16 KB buffers, 64 KB flow-control windows) cost a window update per profile and
#: held PredictStream to ~1,400 profiles/s in one run here; with these, 900-2,400 over five runs
#: (bench/prediction.py; the figure swings with the shared machine's load).
H2_TUNING = {
    "RAY_SERVE_HAPROXY_TUNE_BUFSIZE": "262144",
    "RAY_SERVE_HAPROXY_H2_MAX_FRAME_SIZE": "131072",
    "RAY_SERVE_HAPROXY_H2_FE_INITIAL_WINDOW_SIZE": "16777216",
    "RAY_SERVE_HAPROXY_H2_BE_INITIAL_WINDOW_SIZE": "16777216",
}


def chosen_ingress(ingress: str | None = None) -> str:
    """`ingress`, else $RADIOGENOMICS_INGRESS, else HAProxy; checked."""
    value = (ingress or os.environ.get(INGRESS_ENV) or DEFAULT_INGRESS).strip().lower()
    if value not in INGRESSES:
        raise ValueError(f"ingress {value!r} is not one of {', '.join(INGRESSES)} "
                         f"(--ingress or ${INGRESS_ENV})")
    return value


def active_ingress() -> str:
    """The ingress a local Ray started from this process now uses (what its environment said)."""
    return "haproxy" if os.environ.get(HAPROXY_FLAG) == "1" else "proxy"


#: Where ports picked ahead of their use come from: below Ray Serve's replica port ranges (HTTP
#: 30000-31000, gRPC 40000-41000), above Ray's worker ports (10002-19999), and outside the
#: kernel's ephemeral range, from which every `bind(0)` (Ray's GCS, raylet, agents) draws.
QUIET_PORTS = range(20000, 30000)
_HANDED_OUT: set[int] = set()


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now that nothing else is about to take by chance.

    A port is picked here and bound later, by HAProxy or a test's server, after a new Ray has
    bound dozens of ports of its own. An ephemeral port (`bind(0)`) can be handed to one of Ray's
    processes in that gap, and HAProxy then fails to start; a port of `QUIET_PORTS` outside the
    ephemeral range cannot be.
    """
    ephemeral = _ephemeral_ports()
    candidates = [port for port in QUIET_PORTS if port not in ephemeral and port not in _HANDED_OUT]
    for _ in range(200 if candidates else 0):  # none left (a kernel range covering them all): bind(0) below
        port = candidates[secrets.randbelow(len(candidates))]
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)  # never handed out twice by this process, though it is free until bound
            return port
    for _ in range(100):  # a crowded range: any free port the kernel gives, still never one handed out before
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            break
    else:
        raise OSError("no free loopback port that was not handed out already; too many ports in use")
    _HANDED_OUT.add(port)
    return port


def _ephemeral_ports() -> range:
    """The kernel's range for `bind(0)` (Linux's default when it cannot be read)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def haproxy_folder() -> Path:
    """A new private folder for one run's HAProxy files (short: Unix socket paths are capped at 108 bytes)."""
    return Path(tempfile.mkdtemp(prefix="rg-hap-", dir="/tmp" if os.path.isdir("/tmp") else None))


def haproxy_environment(folder: Path) -> dict[str, str]:
    """The Ray Serve variables for an HAProxy ingress whose files live in `folder`, on free ports."""
    return {
        HAPROXY_FLAG: "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_loopback_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_loopback_port()),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_loopback_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_loopback_port()),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(DRAIN_S),
        **H2_TUNING,
    }


def classic_environment() -> dict[str, str]:
    """The variables for Serve's classic gRPC proxy (HAProxy off, whatever the caller's environment says)."""
    return {HAPROXY_FLAG: "0"}


def ingress_environment(ingress: str, folder: Path | None) -> dict[str, str]:
    """What to put in the environment before a local Ray starts, for `ingress`."""
    if ingress == "haproxy":
        if folder is None:
            raise ValueError("the HAProxy ingress needs a folder (haproxy_folder())")
        return haproxy_environment(folder)
    return classic_environment()


def haproxy_startup_failure(exc: BaseException) -> str | None:
    """HAProxy's own reason, when `exc` is Serve reporting that HAProxy would not start; else None.

    Serve wraps it in a remote-task error carrying HAProxy's whole log on one line; its ALERT
    lines say why (e.g. "cannot bind socket (Address already in use) for [0.0.0.0:26945]").
    """
    text = str(exc)
    if "HAProxy crashed during startup" not in text:
        return None
    reasons: list[str] = []
    for alert in re.findall(r"\[ALERT\]\s*\(\d+\)\s*:\s*([^\n]*?)(?=\[(?:ALERT|NOTICE|WARNING)\]|\\n|\n|Traceback|$)", text):
        reason = re.sub(r"^(?:Binding )?\[[^\]]*haproxy\.cfg:\d+\]\s*(?::\s*)?", "", re.sub(r"\s+", " ", alert).strip())
        if reason and not reason.startswith("[") and reason not in reasons:
            reasons.append(reason)
    return "; ".join(reasons) or "HAProxy exited during startup"


def haproxy_failure_hint(reason: str, local: bool) -> str:
    """The way out of an HAProxy startup failure: free a port only when a TCP port was taken; the classic proxy
    only when this process starts the Ray (on a cluster, or a Ray already running, the ingress is set there)."""
    taken = "cannot bind socket" in reason and "already in use" in reason  # a TCP port, not a UNIX socket path
    ways = (["free that port"] if taken else []) + (["start with --ingress proxy"] if local else [])
    return ", or ".join(ways)


def haproxy_pids(folder: Path) -> list[int]:
    """Pids of HAProxy processes whose configuration lies under `folder` (read from /proc)."""
    marker = str(folder).encode()
    pids = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"haproxy") and any(arg.startswith(marker) for arg in argv[1:]):
            pids.append(int(entry.name))
    return pids


def reap_haproxy(folder: Path, timeout_s: float = 5.0) -> list[int]:
    """Stop (SIGTERM, then SIGKILL) every HAProxy of `folder` still running; remove the folder.

    Returns the pids that had to be stopped (empty when Serve had stopped them itself).
    """
    pids: list[int] = []
    quiet_until = time.monotonic() + QUIET_S
    while time.monotonic() < quiet_until:  # a reload racing with the shutdown can start one more (`-sf old`)
        left = haproxy_pids(folder)
        if left:
            pids += [pid for pid in left if pid not in pids]
            _stop(folder, left, timeout_s)
            quiet_until = time.monotonic() + QUIET_S
        time.sleep(0.05)
    shutil.rmtree(folder, ignore_errors=True)
    return pids


QUIET_S = 1.0  # how long no HAProxy of the folder may appear before it counts as reaped


def _stop(folder: Path, left: list[int], timeout_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s
        while (left := haproxy_pids(folder)) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not left:
            return


def exclusive_replica_ports() -> None:
    """Make each ingress replica's own gRPC server own its port, as Ray means it to.

    Ray 2.60 asks for `grpc.so_reuseport` off with the *string* "0", which grpc ignores, so
    SO_REUSEPORT stays on: a replica of another Serve on the same machine (a second `serve`, a
    test session) binds the same port from Ray's range (40000 up) without error, and the kernel
    then hands this app's calls to the other app's replica (seen here: UNAUTHENTICATED from
    the other app's token check). With the integer 0 the second bind fails and Ray's port
    allocator moves on to a free port. Called in every process that imports our deployments,
    before Serve starts their servers; a no-op once applied.
    """
    from ray.serve._private import grpc_util

    server = grpc_util.gRPCGenericServer
    if getattr(server, "_exclusive_ports", False):
        return
    original = server.__init__

    def __init__(self, service_handler_factory, *, extra_options=None):
        options = [(key, int(value)) if key == "grpc.so_reuseport" and isinstance(value, str) and value.isdigit()
                   else (key, value) for key, value in (extra_options or [])]
        original(self, service_handler_factory, extra_options=options)

    server.__init__ = __init__
    server._exclusive_ports = True
