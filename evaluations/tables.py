"""Paper-style perplexity tables: rows = methods, columns = model x dataset.

:func:`build_table` gathers cell records (dicts with ``method``, ``model``, ``dataset``
and ``ppl``; several records of one cell are repeats over calibration seeds, shown as
mean +- std). :func:`to_markdown`, :func:`to_csv` and :func:`to_latex` (booktabs) render
it, optionally with a delta-vs-baseline column and the published number beside each
reproduced one.
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

Cell = tuple[str, str, str]  # (method, model, dataset)


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of ``n`` repeats (``std`` is None for one)."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Stat":
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


@dataclass
class Table:
    methods: list[str]
    models: list[str]
    datasets: list[str]
    values: dict[Cell, Stat] = field(default_factory=dict)
    baseline: str | None = None
    published: dict[Cell, float] = field(default_factory=dict)
    #: per method (first model that has it): weights MiB, bits per weight, quantization seconds
    footprint: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(m, d) for m in self.models for d in self.datasets]

    def delta(self, method: str, model: str, dataset: str) -> float | None:
        v, b = self.values.get((method, model, dataset)), self.values.get((self.baseline or "", model, dataset))
        return None if v is None or b is None else v.mean - b.mean


def build_table(records: Iterable[Mapping[str, Any]], methods: list[str], models: list[str], datasets: list[str],
                baseline: str | None = None, published: Mapping[str, Any] | None = None) -> Table:
    """A :class:`Table` of the given rows / columns (missing cells stay empty).

    ``published``: ``{method: {model: {dataset: ppl}}}`` (the ``numbers`` of a published file).
    """
    groups: dict[Cell, list[float]] = {}
    footprints: dict[str, tuple[float, float, float]] = {}
    for rec in records:
        cell = (rec["method"], rec["model"], rec["dataset"])
        groups.setdefault(cell, []).append(float(rec["ppl"]))
        fp = rec.get("footprint") or {}
        if rec["method"] not in footprints and fp.get("total_bytes") and (not models or rec["model"] == models[0]):
            footprints[rec["method"]] = (fp["total_bytes"] / 2**20, float(rec.get("bits_per_weight") or 0),
                                         float(rec.get("quantize_s") or 0))
    pub = {(meth, mod, ds): float(v) for meth, by_model in (published or {}).items()
           for mod, by_ds in by_model.items() for ds, v in by_ds.items()}
    return Table(list(methods), list(models), list(datasets), {c: Stat.of(v) for c, v in groups.items()},
                 baseline, pub, footprints)


def fmt(value: float | None, signed: bool = False) -> str:
    """Papers' style: 2 decimals, ``1.3e3`` from 1000 on, ``inf`` / ``nan`` spelled out."""
    if value is None:
        return ""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        mant, exp = f"{value:.1e}".split("e")
        text = f"{mant}e{int(exp)}"
        return ("+" + text) if signed and value > 0 else text
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _stat_text(s: Stat | None, pm: str) -> str:
    if s is None:
        return ""
    return fmt(s.mean) if s.std is None else f"{fmt(s.mean)}{pm}{fmt(s.std)}"


def _header_cells(table: Table, delta: bool, published: bool) -> list[tuple[str, str, str]]:
    """``(model, dataset, kind)`` per value column; kind in ppl / delta / published."""
    out = []
    for model, ds in table.columns:
        out.append((model, ds, "ppl"))
        if published and table.published:
            out.append((model, ds, "published"))
        if delta and table.baseline:
            out.append((model, ds, "delta"))
    return out


def _cell_text(table: Table, method: str, model: str, ds: str, kind: str, pm: str) -> str:
    if kind == "ppl":
        return _stat_text(table.values.get((method, model, ds)), pm)
    if kind == "published":
        return fmt(table.published.get((method, model, ds)))
    return fmt(table.delta(method, model, ds), signed=True)


_KIND_SUFFIX = {"ppl": "", "published": " (paper)", "delta": " Δ"}


def to_markdown(table: Table, delta: bool = False, published: bool = False) -> str:
    """A GitHub Markdown table (``±`` for repeats)."""
    cols = _header_cells(table, delta, published)
    head = ["method"] + [f"{m} {d}{_KIND_SUFFIX[k]}" for m, d, k in cols]
    extra = ["weights (MiB)", "bits/weight", "quant. s"] if table.footprint else []
    lines = ["| " + " | ".join(head + extra) + " |", "|---|" + "---:|" * (len(cols) + len(extra))]
    for method in table.methods:
        cells = [_cell_text(table, method, m, d, k, " ± ") for m, d, k in cols]
        if extra:
            fp = table.footprint.get(method)
            cells += [f"{fp[0]:.1f}", f"{fp[1]:.2f}", f"{fp[2]:.0f}"] if fp else ["", "", ""]
        lines.append("| " + " | ".join([method] + cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: Table, delta: bool = False, published: bool = False) -> str:
    """Full-precision numbers; ``_std`` / ``_n`` columns when some cell was repeated."""
    cols = _header_cells(table, delta, published)
    repeated = any(s.n > 1 for s in table.values.values())
    head = ["method"]
    for m, d, k in cols:
        head.append(f"{m}/{d}" + {"ppl": "", "published": "/published", "delta": "/delta"}[k])
        if k == "ppl" and repeated:
            head += [f"{m}/{d}/std", f"{m}/{d}/n"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for method in table.methods:
        row: list[Any] = [method]
        for m, d, k in cols:
            s = table.values.get((method, m, d))
            if k == "ppl":
                row.append("" if s is None else repr(s.mean))
                if repeated:
                    row += ["" if s is None or s.std is None else repr(s.std), "" if s is None else s.n]
            elif k == "published":
                v = table.published.get((method, m, d))
                row.append("" if v is None else repr(v))
            else:
                v = table.delta(method, m, d)
                row.append("" if v is None else repr(v))
        w.writerow(row)
    return buf.getvalue()


def latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        text = text.replace(a, b) if a != "\\" else text.replace(a, "\x00")
    return text.replace("\x00", r"\textbackslash{}")


def to_latex(table: Table, delta: bool = False, published: bool = False, caption: str | None = None) -> str:
    """A booktabs ``tabular``: a model header row with ``\\cmidrule``, then dataset names."""
    cols = _header_cells(table, delta, published)
    per_model = len(cols) // max(len(table.models), 1)
    lines = [r"\begin{tabular}{l" + "r" * len(cols) + "}", r"\toprule"]
    lines.append(" & ".join(["Method"] + [rf"\multicolumn{{{per_model}}}{{c}}{{{latex_escape(m)}}}"
                                          for m in table.models]) + r" \\")
    rules = [rf"\cmidrule(lr){{{2 + i * per_model}-{1 + (i + 1) * per_model}}}" for i in range(len(table.models))]
    lines.append(" ".join(rules))
    suffix = {"ppl": "", "published": " (paper)", "delta": r" $\Delta$"}
    lines.append(" & ".join([""] + [latex_escape(d) + suffix[k] for _, d, k in cols]) + r" \\")
    lines.append(r"\midrule")
    for method in table.methods:
        cells = [_cell_text(table, method, m, d, k, r" $\pm$ ") for m, d, k in cols]
        lines.append(" & ".join([latex_escape(method)] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    body = "\n".join(lines) + "\n"
    if caption:
        body = "\\begin{table}\n\\centering\n" + body + f"\\caption{{{latex_escape(caption)}}}\n\\end{{table}}\n"
    return body
