"""Gene-set libraries for masking: a GMT file, or every model gene as a set of its own."""

from __future__ import annotations

from pathlib import Path

from radiogenomics.errors import GeneSetError
from radiogenomics.gene_sets import GeneSet, read_gmt
from radiogenomics.registry import LoadedModel


def library_from_gmt(path: str | Path) -> list[GeneSet]:
    """The sets of a GMT file, in file order.

    `read_gmt` refuses empty files, lines without a name or without genes and repeated set names,
    naming the line. On top of that a gene field holding whitespace (genes separated by spaces
    instead of tabs) is refused with its line number, and a file that is not UTF-8 text is refused
    in one line instead of failing somewhere inside the parser.
    """
    path = Path(path)
    try:
        sets = read_gmt(path)
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GeneSetError(f"{path}: not UTF-8 text (byte {exc.start}); a GMT file is tab-separated text") from None
    except IsADirectoryError:
        raise GeneSetError(f"{path}: is a directory; pass a .gmt file") from None
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line.split("\t")
        for gene in fields[2:]:
            if len(gene.strip().split()) > 1:
                raise GeneSetError(
                    f"{path}: line {line_no} (set {fields[0].strip()!r}) has a gene field with spaces ({gene.strip()[:40]!r}); "
                    "GMT lines are NAME<TAB>DESCRIPTION<TAB>GENE<TAB>GENE... (one gene per tab-separated field)"
                )
    return list(sets.values())


def library_single_genes(model: LoadedModel) -> list[GeneSet]:
    """Every model gene as its own set, named after the gene, in the model's gene order."""
    return [GeneSet(name=g, genes=(g,), description="single gene") for g in model.genes]


def check_library(library: list[GeneSet]) -> None:
    """Refuse an empty library, non-GeneSet items and repeated set names (a library given as a list)."""
    if not library:
        raise GeneSetError("the gene-set library is empty; give at least one set")
    seen: dict[str, int] = {}
    for i, gene_set in enumerate(library):
        if not isinstance(gene_set, GeneSet):
            raise GeneSetError(f"library item {i + 1} is a {type(gene_set).__name__}, not a GeneSet")
        if not gene_set.name or not gene_set.name.strip():
            raise GeneSetError(f"library item {i + 1} has no set name; name every set")
        if gene_set.name in seen:
            raise GeneSetError(f"set name {gene_set.name!r} is repeated (items {seen[gene_set.name] + 1} and {i + 1}); "
                               "set names must be unique")
        seen[gene_set.name] = i
