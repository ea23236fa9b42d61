"""Benchmark: masking and extraction on a real Ray cluster with 1 node against 2 nodes, in one run.

A head node (1 CPU) is started with Ray's own CLI on 127.0.0.1 (tests/raynodes.py), a driver process
holding the cluster's token runs the jobs against it (as `--address` does), then a worker node
(1 CPU) joins and a new driver runs the same jobs again. Before each measurement a warm-up task on every node imports
pyradiomics and torch, so process start-up is not timed. Both runs must give identical results.
Goal (issue #15): >= 1.7x throughput with 2 nodes for masking and for extraction.

    python bench/cluster.py [--cases 24] [--nulls 3000] [--chunk-sets 1024]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:  # the cluster launcher lives with the tests
    sys.path.insert(0, str(PROJECT))

from tests.raynodes import LocalCluster  # noqa: E402


def _warm_every_node() -> None:
    """Import pyradiomics and torch in a CPU worker on every alive node (Ray reuses those processes)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    def warm() -> str:
        import radiomics  # noqa: F401 - the import is the warm-up
        import torch  # noqa: F401

        return ray.get_runtime_context().get_node_id()

    task = ray.remote(num_cpus=1)(warm)
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    got = ray.get([task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote() for n in nodes])
    assert sorted(got) == sorted(nodes)


def _measure(work: Path, tag: str, address: str, nulls: int, chunk_sets: int) -> dict:
    """One measurement, run in a driver process that has the cluster's token in its environment."""
    import ray

    from radiogenomics.cohort import load_cohort
    from radiogenomics.extraction.batch import run_batch
    from radiogenomics.extraction.params import ExtractionParams
    from radiogenomics.masking import MaskingOptions, library_from_gmt, prepare, run_masking
    from radiogenomics.registry import load_model

    model = load_model(next((work / "registry" / "bench").iterdir()))
    data, library = prepare(model, load_cohort(work / "cohort" / "test")), library_from_gmt(work / "sets.gmt")
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        _warm_every_node()
        out = work / f"features-{tag}.csv"
        start = time.perf_counter()
        summary = run_batch(work / "cases.csv", out, ExtractionParams({}),
                            address=address, progress=False)
        extraction = time.perf_counter() - start
        assert summary.failed == 0, summary
        start = time.perf_counter()
        result = run_masking(model, data, library, MaskingOptions(n_nulls=nulls, seed=5, chunk_sets=chunk_sets), address=address)
        masking = time.perf_counter() - start
    finally:
        ray.shutdown()
    result.table.to_csv(work / f"masking-{tag}.csv", index=False)
    return {"extraction_s": extraction, "cases": summary.extracted, "masking_s": masking,
            "evaluations": result.evaluations}


def _driver(work: Path, tag: str, cluster: LocalCluster, nulls: int, chunk_sets: int) -> dict:
    result = subprocess.run([sys.executable, __file__, "--driver", str(work), "--tag", tag, "--address", cluster.address,
                             "--nulls", str(nulls), "--chunk-sets", str(chunk_sets)], env=cluster.env, capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=24, help="cases to extract (pyradiomics' lung1 CT, repeated)")
    parser.add_argument("--nulls", type=int, default=3000, help="null sets per size in the masking job")
    parser.add_argument("--chunk-sets", type=int, default=1024,
                        help="gene sets per masking task (default 1024; the job default 256 is sized for one machine)")
    parser.add_argument("--driver", type=Path, help=argparse.SUPPRESS)  # internal: measure in this process
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        print(json.dumps(_measure(args.driver, args.tag, args.address, args.nulls, args.chunk_sets)))
        return 0
    import pandas as pd

    from radiogenomics.cli import default_hallmark_gmt
    from radiogenomics.cohort import load_cohort
    from radiogenomics.gene_sets import read_gmt
    from radiogenomics.synth import SynthConfig, generate
    from radiogenomics.training.direct import fit_and_export
    from radiogenomics.training.network import NetConfig

    work = Path(tempfile.mkdtemp(prefix="rg-bench-cluster-"))
    lung = PROJECT.parent / "shared" / "data" / "pyradiomics"  # a real CT: 512 x 512 x 48, ~1 s per case
    (work / "cases.csv").write_text("sample_id,Image,Mask\n" + "".join(
        f"case{k:03d},{lung / 'lung1_image.nrrd'},{lung / 'lung1_label.nrrd'}\n" for k in range(args.cases)))
    # A paper-sized expression profile (21,766 genes) and a 256-wide first layer, so that a masking chunk is
    # real work (a small model's chunks take milliseconds, and then Ray's task overhead is what is measured).
    generate(SynthConfig(out=work / "cohort", hallmark_gmt=default_hallmark_gmt(), n_train=90, n_test=60,
                         n_genes=21766, n_features=20), progress=False)
    fit_and_export(load_cohort(work / "cohort" / "train"), work / "registry", "bench", NetConfig(widths=(256,)),
                   epochs=4, seed=0)
    sets = read_gmt(work / "cohort" / "gene_sets.gmt")
    keep = [n for n in sets if n.startswith("SYNTH_")][:40] + [n for n in sets if n.startswith("HALLMARK_")][:40]
    (work / "sets.gmt").write_text("".join(f"{n}\tna\t" + "\t".join(sets[n].genes) + "\n" for n in keep))

    cluster = LocalCluster(head_cpus=1)
    try:
        one = _driver(work, "1", cluster, args.nulls, args.chunk_sets)
        cluster.add_worker(cpus=1)
        two = _driver(work, "2", cluster, args.nulls, args.chunk_sets)
        spread = {name: sorted(cluster.task_nodes(name).values()) for name in ("extract_case", "_chunk_task")}
    finally:
        left = cluster.stop()
    assert not left, f"cluster processes left behind: {left}"
    key = ["output", "gene_set"]
    for name, sort in (("features-{}.csv", ["sample_id"]), ("masking-{}.csv", key)):
        a = pd.read_csv(work / name.format(1)).sort_values(sort).reset_index(drop=True)
        b = pd.read_csv(work / name.format(2)).sort_values(sort).reset_index(drop=True)
        same = [c for c in a.columns if not c.startswith("provenance_seconds")]  # all but the timing column
        pd.testing.assert_frame_equal(a[same], b[same], check_exact=True)
    print(f"extraction: {one['cases']} cases of lung1 (512 x 512 x 48 CT); masking: {len(keep)} sets, {args.nulls} nulls per size, "
          f"{one['evaluations']:,} evaluations in tasks of {args.chunk_sets} sets; 1 CPU per node, 127.0.0.1; identical results on 1 and 2 nodes")
    print(f"  finished tasks per node over both runs (state API): {spread}")
    for name, key_s, unit, count in (("extraction", "extraction_s", "cases/s", one["cases"]),
                                     ("masking", "masking_s", "evaluations/s", one["evaluations"])):
        ratio = one[key_s] / two[key_s]
        print(f"  {name:10s} 1 node {one[key_s]:7.2f} s ({count / one[key_s]:9.1f} {unit})   2 nodes {two[key_s]:7.2f} s "
              f"({count / two[key_s]:9.1f} {unit})   speed-up {ratio:.2f}x (goal >= 1.7x: {'met' if ratio >= 1.7 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
