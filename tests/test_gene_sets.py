"""GMT reading and writing, against the real MSigDB Hallmark files."""

from __future__ import annotations

from pathlib import Path

import pytest

from radiogenomics.errors import GeneSetError
from radiogenomics.gene_sets import GeneSet, read_gmt, write_gmt


def test_reads_msigdb_hallmark(shared: Path) -> None:
    sets = read_gmt(shared / "gene_sets" / "h.all.v7.0.symbols.gmt")
    assert len(sets) == 50
    hypoxia = sets["HALLMARK_HYPOXIA"]
    assert len(hypoxia) == 200
    assert hypoxia.genes[:4] == ("PGK1", "PDK1", "GBE1", "PFKL") and "VEGFA" in hypoxia.genes
    assert hypoxia.description.startswith("http")
    assert len(sets["HALLMARK_NOTCH_SIGNALING"]) == 32


def test_hallmark_versions_differ_only_by_msigdb_s_rename(shared: Path) -> None:
    v62 = read_gmt(shared / "gene_sets" / "h.all.v6.2.symbols.gmt")
    v70 = read_gmt(shared / "gene_sets" / "h.all.v7.0.symbols.gmt")
    assert len(v62) == len(v70) == 50
    # MSigDB fixed a typo in one set name between 6.2 and 7.0.
    assert set(v62) ^ set(v70) == {"HALLMARK_REACTIVE_OXIGEN_SPECIES_PATHWAY", "HALLMARK_REACTIVE_OXYGEN_SPECIES_PATHWAY"}


def test_round_trip(tmp_path: Path) -> None:
    sets = [GeneSet("A", ("X", "Y")), GeneSet("B", ("Z",), "desc")]
    write_gmt(tmp_path / "x.gmt", sets)
    back = read_gmt(tmp_path / "x.gmt")
    assert list(back) == ["A", "B"]
    assert back["A"].genes == ("X", "Y") and back["B"].description == "desc"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "file is empty"),
        ("SET_A\tdesc\n", "lists no genes"),
        ("SET_A\tdesc\tG1\nSET_A\tdesc\tG2\n", "repeats set name 'SET_A'"),
        ("\tdesc\tG1\n", "has no set name"),
    ],
)
def test_bad_gmt_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.gmt"
    path.write_text(text)
    with pytest.raises(GeneSetError, match=message) as info:
        read_gmt(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GeneSetError, match="not found"):
        read_gmt(tmp_path / "nope.gmt")
