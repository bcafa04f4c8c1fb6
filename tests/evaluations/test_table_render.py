"""Tables (Markdown, CSV, LaTeX) and the perplexity-vs-bits plot."""
from __future__ import annotations

import csv
import io

from evaluations.plots import plot_ppl_vs_bits
from evaluations.tables import build_table, fmt, to_csv, to_latex, to_markdown

RECORDS = [
    {"method": "FP16", "model": "M1", "dataset": "wiki", "ppl": 10.0},
    {"method": "RTN W4", "model": "M1", "dataset": "wiki", "ppl": 12.0},
    {"method": "GPTQ W4", "model": "M1", "dataset": "wiki", "ppl": 11.0},
    {"method": "GPTQ W4", "model": "M1", "dataset": "wiki", "ppl": 11.5},
]


def _table(**kw):
    return build_table(RECORDS, ["FP16", "RTN W4", "GPTQ W4"], ["M1"], ["wiki", "ptb"], baseline="FP16", **kw)


def test_fmt_papers_style():
    assert fmt(27.654) == "27.65" and fmt(1300.0) == "1.3e3" and fmt(2.0, signed=True) == "+2.00"


def test_markdown_mean_std_delta_and_missing_cells():
    md = to_markdown(_table(), delta=True)
    lines = md.splitlines()
    assert lines[0] == "| method | M1 wiki | M1 wiki Δ | M1 ptb | M1 ptb Δ |"
    assert "| GPTQ W4 | 11.25 ± 0.35 | +1.25 |  |  |" in lines
    assert "| RTN W4 | 12.00 | +2.00 |" in md


def test_published_side_by_side():
    t = _table(published={"RTN W4": {"M1": {"wiki": 1300.0}}})
    md = to_markdown(t, published=True)
    assert "M1 wiki (paper)" in md.splitlines()[0] and "| RTN W4 | 12.00 | 1.3e3 |" in md


def test_csv_has_std_columns_when_repeated():
    rows = list(csv.reader(io.StringIO(to_csv(_table()))))
    assert rows[0][:4] == ["method", "M1/wiki", "M1/wiki/std", "M1/wiki/n"]
    gptq = rows[3]
    assert float(gptq[1]) == 11.25 and gptq[3] == "2"


def test_latex_booktabs():
    tex = to_latex(_table(), delta=True, caption="ppl_table")
    for part in (r"\toprule", r"\midrule", r"\bottomrule", r"\multicolumn{4}{c}{M1}", r"\cmidrule(lr){2-5}",
                 r"11.25 $\pm$ 0.35", r"ppl\_table"):
        assert part in tex, part


def test_plot_writes_png_log_scale(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    pts = [{"model": "M", "dataset": "d", "line": "RTN", "bits_per_weight": b, "ppl": p}
           for b, p in ((3.5, 500.0), (4.5, 12.0), (8.5, 10.0))]
    path = plot_ppl_vs_bits(pts, tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
