"""Prometheus metrics of the services, exported through Ray's metrics agent.

Ray exports every application metric on each node's metrics port with a `ray_` prefix;
`deploy/prometheus.yml` renames `ray_radiogenomics_*` to `radiogenomics_*` when it scrapes, so
dashboards and alerts use the Prometheus-style names listed in `NAMES`. Labels never carry a
patient, case, job or request id: only service, method, status code, model, version and state.
Metric objects are made on first use, inside the replica process that records them.
"""

from __future__ import annotations

from functools import cache

from ray.util.metrics import Counter, Gauge, Histogram

LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
VOXEL_BUCKETS = [1e3, 1e4, 1e5, 1e6, 1e7, 1e8]

# Names as Prometheus stores them after deploy/prometheus.yml's relabelling (counters gain `_total`).
NAMES = {
    "requests": "radiogenomics_requests_total",
    "request_seconds": "radiogenomics_request_seconds",
    "batch_profiles": "radiogenomics_prediction_batch_profiles",
    "extraction_seconds": "radiogenomics_extraction_seconds",
    "extraction_voxels": "radiogenomics_extraction_roi_voxels",
    "masked_evaluations": "radiogenomics_masking_evaluations_total",
    "masking_jobs": "radiogenomics_masking_jobs",
    "masking_queue": "radiogenomics_masking_chunks_pending",
    "model_info": "radiogenomics_model_info",
}


def _bare(key: str) -> str:
    """The name given to Ray (Ray adds `_total` to counters itself)."""
    return NAMES[key].removesuffix("_total")


@cache
def requests() -> Counter:
    return Counter(_bare("requests"), "RPCs answered, by service, method and gRPC status code",
                   tag_keys=("service", "method", "code"))


@cache
def request_seconds() -> Histogram:
    return Histogram(_bare("request_seconds"), "time to answer an RPC, in seconds (streams: until the last message)",
                     boundaries=LATENCY_BUCKETS, tag_keys=("service", "method"))


@cache
def batch_profiles() -> Histogram:
    return Histogram(_bare("batch_profiles"), "profiles per forward pass after @serve.batch pooling",
                     boundaries=BATCH_BUCKETS, tag_keys=("model", "version"))


@cache
def extraction_seconds() -> Histogram:
    return Histogram(_bare("extraction_seconds"), "pyradiomics extraction time per case, in seconds",
                     boundaries=LATENCY_BUCKETS, tag_keys=())


@cache
def extraction_voxels() -> Histogram:
    return Histogram(_bare("extraction_voxels"), "voxels in the region of interest per extracted case",
                     boundaries=VOXEL_BUCKETS, tag_keys=())


@cache
def masked_evaluations() -> Counter:
    return Counter(_bare("masked_evaluations"), "masked forward evaluations (gene sets x patients) done by masking jobs",
                   tag_keys=("mode",))


@cache
def masking_jobs() -> Gauge:
    return Gauge(_bare("masking_jobs"), "masking jobs in the job store, by state", tag_keys=("state",))


@cache
def masking_queue() -> Gauge:
    return Gauge(_bare("masking_queue"), "chunks of the running masking job not yet evaluated", tag_keys=())


@cache
def model_info() -> Gauge:
    return Gauge(_bare("model_info"), "1 for each model version a prediction replica serves", tag_keys=("model", "version"))


class Gauges:
    """Gauge values a replica keeps reporting.

    Ray's metrics agent drops a gauge value it has not received for two report intervals (20 s),
    so a value set once (the model version served, an idle queue) would vanish from Prometheus.
    `set` records the value; `keep_reporting` (a task in the replica's event loop) sends every
    recorded value again every few seconds.
    """

    PERIOD_S = 5.0

    def __init__(self) -> None:
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[Gauge, float, dict[str, str]]] = {}
        self._task = None

    def set(self, gauge: Gauge, value: float, tags: dict[str, str] | None = None) -> None:
        tags = tags or {}
        self._values[(gauge.info["name"], tuple(sorted(tags.items())))] = (gauge, value, tags)
        gauge.set(value, tags=tags)

    def keep_reporting(self) -> None:
        """Start the re-reporting task once (call from a coroutine running in the replica)."""
        import asyncio

        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        import asyncio

        while True:
            await asyncio.sleep(self.PERIOD_S)
            for gauge, value, tags in list(self._values.values()):
                gauge.set(value, tags=tags)
