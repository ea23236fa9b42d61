"""Shared fixtures: paths to the real reference data in ../shared/data and one synthetic cohort."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RADIOGENOMICS_SHARED_DATA", PROJECT.parent / "shared" / "data"))
HALLMARK_GMT = SHARED / "gene_sets" / "h.all.v7.0.symbols.gmt"


def pytest_configure(config: pytest.Config) -> None:
    if not SHARED.is_dir():
        raise pytest.UsageError(f"reference data not found at {SHARED}; check out ../shared beside the project or set RADIOGENOMICS_SHARED_DATA")


@pytest.fixture(scope="session")
def shared() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def hallmark_gmt() -> Path:
    return HALLMARK_GMT


@pytest.fixture(scope="session")
def paper_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default synthetic cohort (262 + 89 patients, 21,766 genes, 101 features), written once."""
    from radiogenomics.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth") / "paper"
    generate(SynthConfig(out=out, hallmark_gmt=HALLMARK_GMT), progress=False)
    return out


SMALL_MODEL = "nsclc"


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic cohort (90 + 40 patients, 1,500 genes, 6 features) with its gene_sets.gmt and truth."""
    from radiogenomics.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("small") / "cohort"
    generate(SynthConfig(out=out, hallmark_gmt=HALLMARK_GMT, n_train=90, n_test=40, n_genes=1500, n_features=6), progress=False)
    return out


@pytest.fixture(scope="session")
def small_registry(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with two real versions ("1", "2") of SMALL_MODEL, fitted with different seeds."""
    from radiogenomics.cohort import load_cohort
    from radiogenomics.training.direct import fit_and_export
    from radiogenomics.training.network import NetConfig

    root = tmp_path_factory.mktemp("registry")
    cohort = load_cohort(small_cohort / "train")
    for seed in (0, 1):
        fit_and_export(cohort, root, SMALL_MODEL, NetConfig(widths=(32,)), epochs=8, seed=seed)
    return root


def cut_library(small_cohort: Path, per_kind: int, out: Path) -> Path:
    """The generator's gene_sets.gmt cut to `per_kind` synthetic (planted, decoy) and `per_kind` Hallmark sets."""
    from radiogenomics.gene_sets import read_gmt

    sets = read_gmt(small_cohort / "gene_sets.gmt")
    keep = [n for n in sets if n.startswith("SYNTH_")][:per_kind] + [n for n in sets if n.startswith("HALLMARK_")][:per_kind]
    out.write_text("".join(f"{n}\tna\t" + "\t".join(sets[n].genes) + "\n" for n in keep))
    return out


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    from services.run import free_loopback_port

    return free_loopback_port()


@pytest.fixture(scope="session")
def pacs_data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The DICOM cases the session's PACS holds, as files, with their UIDs (see tests/orthanc.py)."""
    from orthanc import reference_cases

    return reference_cases(tmp_path_factory.mktemp("pacs-data"))


@pytest.fixture(scope="session")
def orthanc(pacs_data: dict, tmp_path_factory: pytest.TempPathFactory):
    """One real PACS for the session: Debian's Orthanc + DICOMweb on a free loopback port, stopped by pid."""
    from orthanc import orthanc_server

    with orthanc_server(tmp_path_factory.mktemp("orthanc"), free_port()) as server:
        assert server.store(pacs_data["instances"]) == len(pacs_data["instances"])
        yield server


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session, bound to 127.0.0.1; shut down at the end.

    Serve on it uses the ingress `radiogenomics serve` uses: HAProxy, unless $RADIOGENOMICS_INGRESS
    says `proxy` (Serve's classic gRPC proxy). HAProxy gets its own folder and free ports, and any
    HAProxy of that folder still running after Ray is stopped by its pid.
    """
    import ray

    from services.run import local_ingress

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    with local_ingress(None, None):
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        yield ray
        ray.shutdown()


@pytest.fixture(scope="session")
def serve_grpc(ray_local):
    """Ray Serve with its gRPC proxy on a free loopback port, every servicer registered; shut down at the end."""
    from ray import serve
    from ray.serve.config import gRPCOptions

    from services.masking import SERVICER as MASKING_SERVICER
    from services.prediction import SERVICERS as PREDICTION_SERVICERS
    from services.radiomics import SERVICER as RADIOMICS_SERVICER

    port = free_port()
    serve.start(
        http_options={"host": "127.0.0.1", "port": free_port()},
        grpc_options=gRPCOptions(port=port, grpc_servicer_functions=[RADIOMICS_SERVICER, *PREDICTION_SERVICERS, MASKING_SERVICER], request_timeout_s=300),
    )
    yield port
    serve.shutdown()
