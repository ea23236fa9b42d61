"""Figures of the main job: ROC curves of served predictions and a gene-masking heatmap.

Drawn on matplotlib's Agg canvas (no pyplot, no global backend state), so they work in a
headless process, a Ray worker or a test alike. Each function writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from sklearn.metrics import roc_curve

from radiogenomics.errors import InputError
from radiogenomics.training.targets import safe_auc

_DPI = 120
#: A ROC curve: true binary labels and the predicted score, aligned.
Curve = tuple[np.ndarray, np.ndarray]


def _canvas(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=_DPI, bbox_inches="tight", pad_inches=0.15)  # legends outside the axes stay in
    return path


def roc_panels(panels: Mapping[str, Mapping[str, Curve]], path: Path, title: str) -> Path:
    """ROC curves side by side, one panel per entry of `panels` and one curve per (label, (y, score)).

    The legend gives each curve's AUC; a curve whose labels hold one class only is listed as
    `n/a` and not drawn (no ROC exists for it).
    """
    if not panels:
        raise InputError("no ROC panels to draw; pass at least one panel of curves")
    fig = _canvas(4.6 * len(panels), 5.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (panel, curves) in zip(axes, panels.items(), strict=True):
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=0.8)
        for label, (y, score) in curves.items():
            auc = safe_auc(y, score)
            if np.isnan(auc):
                ax.plot([], [], label=f"{label} (AUC n/a)")
                continue
            fpr, tpr, _ = roc_curve(y, score)
            ax.plot(fpr, tpr, linewidth=1.4, label=f"{label} (AUC {auc:.3f})")
        ax.set(xlim=(0, 1), ylim=(0, 1.01), aspect="equal", xlabel="false positive rate", ylabel="true positive rate")
        ax.set_title(panel, fontsize=9)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _heatmap_rows(table: pd.DataFrame, top: int, always: Collection[str]) -> list[str]:
    """The `top` sets with the lowest best q (ties: largest effect), then any `always` set not among them."""
    best = table.groupby("gene_set").agg(q=("q_value", "min"), effect=("effect", "max"))
    ranked = best.sort_values(["q", "effect"], ascending=[True, False]).index.tolist()
    always = set(always)
    return ranked[:top] + [name for name in ranked[top:] if name in always]


def masking_heatmap(table: pd.DataFrame, path: Path, planted: Collection[tuple[str, str]] = (),
                    outputs: Sequence[str] | None = None, top: int = 20, q: float = 0.1, mode: str = "keep") -> Path:
    """Heatmap of gene sets x outputs from a masking table, coloured by how far the set is from its null.

    `table` has one row per (gene_set, output) with `auc`, `null_mean` (mean AUC of size-matched
    random sets) and `q_value`; the colour is how much better the set alone predicts the output
    than random sets of its size. Rows: the `top` sets with the lowest q for any output, plus every
    planted set not among them, so the truth is always on the figure. Columns: `outputs` in that
    order (default: table order). A dot marks a call (q < `q`); a frame marks a planted (set, output) pair.
    In drop mode the colour is the other way round, the null mean minus the AUC without the set: how
    much more removing the set hurts than removing random sets of its size. Red is a set that matters.
    """
    if mode not in ("keep", "drop"):
        raise InputError(f"masking mode {mode!r} is not one of: keep, drop")
    missing = {"gene_set", "output", "auc", "null_mean", "q_value"} - set(table.columns)
    if missing:
        raise InputError(f"masking table lacks column(s) {', '.join(sorted(missing))}")
    if table.empty:
        raise InputError("masking table is empty; nothing to draw")
    table = table.assign(effect=(table["auc"] - table["null_mean"]) * (1 if mode == "keep" else -1))
    outputs = list(outputs) if outputs is not None else list(dict.fromkeys(table["output"]))
    rows = _heatmap_rows(table, top, {s for s, _ in planted})
    effect = table.pivot_table(index="gene_set", columns="output", values="effect").reindex(index=rows, columns=outputs)
    qv = table.pivot_table(index="gene_set", columns="output", values="q_value").reindex(index=rows, columns=outputs)

    fig = _canvas(max(8.0, 3.0 + 0.13 * len(outputs)), 3.4 + 0.2 * len(rows))
    ax = fig.add_subplot()
    limit = float(np.nanmax(np.abs(effect.to_numpy()))) or 1.0
    image = ax.imshow(effect.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    called = np.argwhere(qv.to_numpy() < q)
    ax.scatter(called[:, 1], called[:, 0], s=6, color="black", linewidths=0, label=f"called: q < {q:g}")
    for gene_set, output in planted:
        if gene_set in rows and output in outputs:
            ax.add_patch(Rectangle((outputs.index(output) - 0.5, rows.index(gene_set) - 0.5), 1, 1,
                                   fill=False, edgecolor="black", linewidth=1.2))
    ax.add_patch(Rectangle((0, 0), 0, 0, fill=False, edgecolor="black", linewidth=1.2, label="planted (set, output)"))
    ax.set_xticks(range(len(outputs)), [o.removeprefix("original_") for o in outputs], rotation=90, fontsize=5)
    ax.set_yticks(range(len(rows)), rows, fontsize=6)
    ax.set_xlabel("model output", fontsize=8)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, fontsize=7, frameon=False)
    bar = fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    bar.set_label("AUC of the kept set - mean AUC of random sets of its size" if mode == "keep" else
                  "mean AUC without random sets of its size - AUC without the set", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    fig.suptitle(f"Gene masking ({mode} mode): the {min(top, len(rows))} gene sets with the lowest q, "
                 "plus planted sets not among them", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
