"""Gene-set libraries in GMT format (MSigDB's format: name, description, genes; tab-separated).

Used by the synthetic generator (planted and decoy programs) and by gene masking.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from radiogenomics.errors import GeneSetError


@dataclass(frozen=True)
class GeneSet:
    """A named set of gene symbols, in the order the library lists them (duplicates removed)."""

    name: str
    genes: tuple[str, ...]
    description: str = ""

    def __len__(self) -> int:
        return len(self.genes)


def read_gmt(path: str | Path) -> dict[str, GeneSet]:
    """Read a GMT file into {set name: GeneSet}, preserving file order.

    Rejects empty files, lines without genes and repeated set names with a one-line error.
    """
    path = Path(path)
    if not path.is_file():
        raise GeneSetError(f"{path}: gene-set file not found; pass an existing .gmt file")
    sets: dict[str, GeneSet] = {}
    with path.open(encoding="utf-8") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            name = fields[0].strip()
            genes = tuple(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
            if not name:
                raise GeneSetError(f"{path}: line {line_no} has no set name; GMT lines are NAME<TAB>DESCRIPTION<TAB>GENE...")
            if not genes:
                raise GeneSetError(
                    f"{path}: line {line_no} (set {name!r}) lists no genes; GMT lines are NAME<TAB>DESCRIPTION<TAB>GENE... "
                    "(tab-separated)"
                )
            if name in sets:
                raise GeneSetError(f"{path}: line {line_no} repeats set name {name!r}; set names must be unique")
            description = fields[1].strip() if len(fields) > 1 else ""
            sets[name] = GeneSet(name=name, genes=genes, description=description)
    if not sets:
        raise GeneSetError(f"{path}: file is empty; a GMT file needs at least one NAME<TAB>DESCRIPTION<TAB>GENE... line")
    return sets


def write_gmt(path: str | Path, gene_sets: Mapping[str, GeneSet] | Iterable[GeneSet]) -> None:
    """Write gene sets as GMT (one set per line)."""
    items = gene_sets.values() if isinstance(gene_sets, Mapping) else gene_sets
    with Path(path).open("w", encoding="utf-8") as handle:
        for gene_set in items:
            handle.write("\t".join([gene_set.name, gene_set.description or "na", *gene_set.genes]) + "\n")
