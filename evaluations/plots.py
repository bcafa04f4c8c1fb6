"""Perplexity against bits per weight: one panel per (model, dataset), one line per method family."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping
from ptq.errors import PTQUserError


def plot_ppl_vs_bits(points: Iterable[Mapping[str, Any]], path: str | Path, title: str | None = None) -> Path:
    """Write a PNG; ``points`` are dicts with ``model``, ``dataset``, ``line``, ``bits_per_weight``, ``ppl``.

    Repeats (same model, dataset, line and bits) are averaged. A panel's y axis is
    logarithmic when its largest perplexity is more than 10x its smallest.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    grouped: dict[tuple[str, str], dict[str, dict[float, list[float]]]] = {}
    models: list[str] = []
    datasets: list[str] = []
    for p in points:
        model, ds = str(p["model"]), str(p["dataset"])
        models += [model] if model not in models else []
        datasets += [ds] if ds not in datasets else []
        by_line = grouped.setdefault((model, ds), {})
        by_line.setdefault(str(p["line"]), {}).setdefault(round(float(p["bits_per_weight"]), 4), []).append(float(p["ppl"]))
    if not grouped:
        raise PTQUserError("nothing to plot: no finished cells")
    fig, axes = plt.subplots(len(models), len(datasets), figsize=(4.2 * len(datasets), 3.4 * len(models)),
                             squeeze=False)
    for i, model in enumerate(models):
        for j, ds in enumerate(datasets):
            ax = axes[i][j]
            values: list[float] = []
            for line, by_bits in grouped.get((model, ds), {}).items():
                xs = sorted(by_bits)
                ys = [sum(by_bits[x]) / len(by_bits[x]) for x in xs]
                values += ys
                ax.plot(xs, ys, marker="o", label=line)
            finite = [v for v in values if v > 0 and v != float("inf")]
            if finite and max(finite) / min(finite) > 10:
                ax.set_yscale("log")
            ax.set_title(f"{model} / {ds}", fontsize=9)
            ax.set_xlabel("bits per weight")
            ax.set_ylabel("perplexity")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
