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
    """Mean and sample standard deviation of ``n`` repeats (``std`` is None for one); ``se``: the
    standard error of ``mean`` (a single record's own SE over windows, ``std / sqrt(n)`` for repeats)."""

    mean: float
    std: float | None
    n: int
    se: float | None = None

    @classmethod
    def of(cls, values: list[float], ses: list[float | None] | None = None) -> "Stat":
        n = len(values)
        std = statistics.stdev(values) if n > 1 else None
        se = (ses or [None])[0] if n == 1 else std / math.sqrt(n)
        return cls(statistics.fmean(values), std, n, None if se is None else float(se))


Windows = tuple[tuple[int, ...], list[float], list[int]]  # (begins, mean NLL per window, scored tokens per window)


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
    kl: dict[Cell, Stat] = field(default_factory=dict)  # mean KL to the float model (nats)
    top1: dict[Cell, Stat] = field(default_factory=dict)  # share of positions with the float model's top token
    windows: dict[Cell, Windows] = field(default_factory=dict)  # single-record cells: per-window NLLs (pairing)
    bos: dict[str, bool] = field(default_factory=dict)  # per model: a BOS token led every evaluation window

    @property
    def columns(self) -> list[tuple[str, str]]:
        return [(m, d) for m in self.models for d in self.datasets]

    def delta(self, method: str, model: str, dataset: str) -> float | None:
        v, b = self.values.get((method, model, dataset)), self.values.get((self.baseline or "", model, dataset))
        return None if v is None or b is None else v.mean - b.mean

    def compare(self, a: str, b: str, model: str, dataset: str) -> tuple[float, float | None, bool | None] | None:
        """``(ppl_a - ppl_b, its SE, within noise)`` of two rows (module docstring), None if a cell is missing."""
        from evaluations.stats import paired_ppl_delta, unpaired_delta, within_noise

        va, vb = self.values.get((a, model, dataset)), self.values.get((b, model, dataset))
        if va is None or vb is None:
            return None
        wa, wb = self.windows.get((a, model, dataset)), self.windows.get((b, model, dataset))
        if wa is not None and wb is not None and wa[0] == wb[0] and wa[2] == wb[2]:
            d, se = paired_ppl_delta(wa[1], wb[1], wa[2])
        else:
            d, se = unpaired_delta(va.mean, va.se, vb.mean, vb.se)
        return d, se, within_noise(d, se)


def build_table(records: Iterable[Mapping[str, Any]], methods: list[str], models: list[str], datasets: list[str],
                baseline: str | None = None, published: Mapping[str, Any] | None = None) -> Table:
    """A :class:`Table` of the given rows / columns (missing cells stay empty).

    ``published``: ``{method: {model: {dataset: ppl}}}`` (the ``numbers`` of a published file).
    """
    groups: dict[Cell, list[Mapping[str, Any]]] = {}
    footprints: dict[str, tuple[float, float, float]] = {}
    bos: dict[str, bool] = {}
    for rec in records:
        cell = (rec["method"], rec["model"], rec["dataset"])
        groups.setdefault(cell, []).append(rec)
        if rec.get("bos") is not None:
            bos.setdefault(rec["model"], bool(rec["bos"]))
        fp = rec.get("footprint") or {}
        if rec["method"] not in footprints and fp.get("total_bytes") and (not models or rec["model"] == models[0]):
            footprints[rec["method"]] = (fp["total_bytes"] / 2**20, float(rec.get("bits_per_weight") or 0),
                                         float(rec.get("quantize_s") or 0))
    pub = {(meth, mod, ds): float(v) for meth, by_model in (published or {}).items()
           for mod, by_ds in by_model.items() for ds, v in by_ds.items()}
    values = {c: Stat.of([float(r["ppl"]) for r in g], [r.get("ppl_se") for r in g]) for c, g in groups.items()}
    kl = {c: Stat.of([r["kl"]["kl_mean"] for r in g], [r["kl"].get("kl_se") for r in g])
          for c, g in groups.items() if all(r.get("kl") for r in g)}
    top1 = {c: Stat.of([r["kl"]["top1"] for r in g], [r["kl"].get("top1_se") for r in g])
            for c, g in groups.items() if all(r.get("kl") for r in g)}
    windows = {c: _windows(g[0]) for c, g in groups.items() if len(g) == 1 and _windows(g[0]) is not None}
    return Table(list(methods), list(models), list(datasets), values, baseline, pub, footprints, kl, top1, windows, bos)


def _windows(rec: Mapping[str, Any]) -> Windows | None:
    p = rec.get("perplexity") or {}
    if not p.get("window_nll"):
        return None
    return tuple(p["window_begins"]), list(p["window_nll"]), list(p["window_tokens"])


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


def _se_text(se: float) -> str:
    """An SE to two decimals as the papers print, three below 0.01 (a paired SE is often that small)."""
    return f"{se:.3f}" if 0 < se < 0.01 else fmt(se)


def _stat_text(s: Stat | None, pm: str, digits: int | None = None, scale: float = 1.0) -> str:
    """``mean ± std`` of repeats, ``mean ± SE`` of one record, ``mean`` alone when neither is known."""
    if s is None:
        return ""
    spread = s.std if s.n > 1 else s.se
    if digits is not None:
        text = f"{s.mean * scale:.{digits}f}"
        return text if spread is None else f"{text}{pm}{spread * scale:.{digits}f}"
    return fmt(s.mean) if spread is None else f"{fmt(s.mean)}{pm}{_se_text(spread)}"


def _header_cells(table: Table, delta: bool, published: bool) -> list[tuple[str, str, str]]:
    """``(model, dataset, kind)`` per value column; kind in ppl / published / delta / kl / top1."""
    out = []
    for model, ds in table.columns:
        out.append((model, ds, "ppl"))
        if published and table.published:
            out.append((model, ds, "published"))
        if delta and table.baseline:
            out.append((model, ds, "delta"))
        if table.kl:
            out += [(model, ds, "kl"), (model, ds, "top1")]
    return out


NOISE_MARK = " ≈"


def _delta_text(table: Table, method: str, model: str, ds: str, pm: str) -> str:
    if method == table.baseline:
        return fmt(table.delta(method, model, ds), signed=True)
    c = table.compare(method, table.baseline or "", model, ds)
    if c is None:
        return ""
    d, se, noise = c
    text = fmt(d, signed=True) + ("" if se is None else f"{pm}{_se_text(se)}")
    return text + (NOISE_MARK if noise else "")


def _cell_text(table: Table, method: str, model: str, ds: str, kind: str, pm: str) -> str:
    cell = (method, model, ds)
    if kind == "ppl":
        return _stat_text(table.values.get(cell), pm)
    if kind == "published":
        return fmt(table.published.get(cell))
    if kind == "kl":
        return _stat_text(table.kl.get(cell), pm, digits=4)
    if kind == "top1":
        return _stat_text(table.top1.get(cell), pm, digits=1, scale=100.0)
    return _delta_text(table, method, model, ds, pm)


_KIND_SUFFIX = {"ppl": "", "published": " (paper)", "delta": " Δ", "kl": " KL", "top1": " top-1 %"}


def legend(table: Table, delta: bool) -> list[str]:
    """Lines under a table: what ± means, the noise mark, BOS per model."""
    out = []
    has_se = any(s.se is not None for s in table.values.values())
    if has_se:
        out.append("ppl ± SE over evaluation windows (± std over calibration seeds when repeated).")
    if delta and table.baseline and has_se:
        out.append(f"Δ = ppl − {table.baseline}, ± its SE (paired over windows when both rows have the same windows); "
                   f"{NOISE_MARK.strip()} = within noise (|Δ| < 2 SE).")
    if table.kl:
        out.append("KL = mean KL(float ‖ row) of next-token distributions (nats, top-k cached float logits); "
                   "top-1 % = positions whose most likely token is the float model's.")
    if table.bos:
        out.append("BOS in front of every window: " + ", ".join(f"{m} {'yes' if b else 'no'}"
                                                                 for m, b in table.bos.items()) + ".")
    return out


def to_markdown(table: Table, delta: bool = False, published: bool = False) -> str:
    """A GitHub Markdown table (``±`` for SEs and repeats), then its legend."""
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
    notes = legend(table, delta)
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")


def _num(v: float | int | None) -> Any:
    return "" if v is None else repr(v)


def to_csv(table: Table, delta: bool = False, published: bool = False) -> str:
    """Full-precision numbers; ``_std`` / ``_n`` columns when some cell was repeated, ``/se`` columns
    when some cell has an SE; KL / top-1 and their SEs; the delta's SE and within-noise flag."""
    cols = _header_cells(table, delta, published)
    repeated = any(s.n > 1 for s in table.values.values())
    has_se = any(s.se is not None for s in table.values.values())
    head = ["method"]
    for m, d, k in cols:
        head.append(f"{m}/{d}" + {"ppl": "", "published": "/published", "delta": "/delta", "kl": "/kl",
                                  "top1": "/top1"}[k])
        if k == "ppl" and repeated:
            head += [f"{m}/{d}/std", f"{m}/{d}/n"]
        if k == "ppl" and has_se:
            head.append(f"{m}/{d}/se")
        if k in ("kl", "top1"):
            head.append(f"{m}/{d}/{k}/se")
        if k == "delta" and has_se:
            head += [f"{m}/{d}/delta/se", f"{m}/{d}/delta/within_noise"]
    if table.bos:
        head.append("bos")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for method in table.methods:
        row: list[Any] = [method]
        for m, d, k in cols:
            cell = (method, m, d)
            s = table.values.get(cell)
            if k == "ppl":
                row.append("" if s is None else repr(s.mean))
                if repeated:
                    row += ["" if s is None or s.std is None else repr(s.std), "" if s is None else s.n]
                if has_se:
                    row.append("" if s is None else _num(s.se))
            elif k == "published":
                row.append(_num(table.published.get(cell)))
            elif k in ("kl", "top1"):
                st = (table.kl if k == "kl" else table.top1).get(cell)
                row += ["", ""] if st is None else [repr(st.mean), _num(st.se)]
            else:
                row.append(_num(table.delta(method, m, d)))
                if has_se:
                    c = table.compare(method, table.baseline or "", m, d) if method != table.baseline else None
                    row += ["", ""] if c is None else [_num(c[1]), "" if c[2] is None else str(c[2]).lower()]
        if table.bos:
            row.append(" ".join(f"{mod}={'yes' if table.bos.get(mod) else 'no'}" for mod in table.models
                                if mod in table.bos))
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
    suffix = {"ppl": "", "published": " (paper)", "delta": r" $\Delta$", "kl": " KL", "top1": r" top-1 \%"}
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
