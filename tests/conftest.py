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
