"""Turn a grid's finished cells into table files (Markdown, CSV, LaTeX) and the plot."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluations.results_store import ResultsStore
from evaluations.tables import Table, build_table, to_csv, to_latex, to_markdown
from scripts.grid.config import GridConfig
from scripts.grid.runner import plan_cells


@dataclass
class Rendered:
    """The Markdown table and the files written (``None`` when no output folder was given)."""

    table: Table
    markdown: str
    files: dict[str, Path]
    missing: int  # cells of the config not in the store


def grid_records(config: GridConfig, store: ResultsStore) -> tuple[list[dict[str, Any]], int]:
    """The store's records of ``config``'s cells, labelled as the config labels them; and the missing count."""
    by_key = store.by_key()
    out, missing = [], 0
    for cell in plan_cells(config):
        rec = by_key.get(cell.key)
        if rec is None:
            missing += 1
            continue
        out.append({**rec, "model": cell.model.label, "method": cell.method.label, "dataset": cell.dataset.label,
                    "line": cell.method.line})
    return out, missing


def domain_note(config: GridConfig) -> str:
    """A line under the table: which evaluation datasets are of the calibration text's domain(s)
    (:meth:`GridConfig.in_domain`) and which are not; empty when no row is calibrated."""
    if not any(m.needs_calibration() for m in config.methods):
        return ""
    inside = [d.label for d in config.datasets if config.in_domain(d)]
    outside = [d.label for d in config.datasets if not config.in_domain(d)]
    return (f"\nCalibration {config.calibration.source}: in domain {', '.join(inside) or 'none'}; "
            f"out of domain {', '.join(outside) or 'none'}.\n")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def render(config: GridConfig, store: ResultsStore, out_dir: str | Path | None = None, delta: bool = False,
           published: bool | None = None, plot: bool = True) -> Rendered:
    """Build the table of ``config`` from ``store``; with ``out_dir`` write table.md/.csv/.tex and ppl_vs_bits.png.

    ``published`` (default: whenever the config ships published numbers) adds them beside
    the reproduced ones.
    """
    records, missing = grid_records(config, store)
    numbers = (config.published or {}).get("numbers")
    show_pub = bool(numbers) if published is None else published and bool(numbers)
    table = build_table(records, [m.label for m in config.methods], [m.label for m in config.models],
                        [d.label for d in config.datasets], baseline=config.baseline, published=numbers)
    note = domain_note(config)
    md = to_markdown(table, delta=delta, published=show_pub) + note
    files: dict[str, Path] = {}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, text in (("table.md", md), ("table.csv", to_csv(table, delta=delta, published=show_pub)),
                           ("table.tex", to_latex(table, delta=delta, published=show_pub,
                                                  caption=f"Perplexity ({config.name}){note.rstrip()}"))):
            _write_text(out / name, text)
            files[name] = out / name
        if plot and records:
            from evaluations.plots import plot_ppl_vs_bits

            files["ppl_vs_bits.png"] = plot_ppl_vs_bits(records, out / "ppl_vs_bits.png",
                                                        title=f"{config.name}: perplexity vs bits per weight")
    return Rendered(table, md, files, missing)
