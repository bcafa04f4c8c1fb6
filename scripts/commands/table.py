"""``ptq table CONFIG_OR_PRESET``: run a models x methods x datasets grid and print the table.

Finished cells go to a JSON Lines results store (default ``OUT/results.jsonl``) as soon as
they are computed; a rerun skips them. Writes ``table.md``, ``table.csv``, ``table.tex``
and ``ppl_vs_bits.png`` in ``--out`` (default ``ptq-table-NAME``).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from scripts.commands.common import add_quiet, info
from ptq.errors import PTQUserError

HELP = "run a grid of models x methods x datasets from a TOML/YAML config or a preset, and print the table"


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for v in values or []:
        label, sep, target = v.partition("=")
        if not sep or not label or not target:
            raise PTQUserError(f"{flag} takes LABEL=VALUE, got {v!r}")
        out[label] = target
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="a .toml/.yaml grid config, or a preset name (offline, gptq-paper)")
    p.add_argument("--results", default=None, help="JSON Lines results store (default OUT/results.jsonl)")
    p.add_argument("--out", default=None, help="folder of the table files and the plot (default ptq-table-NAME)")
    p.add_argument("--delta", action="store_true", help="add delta-vs-baseline columns")
    p.add_argument("--no-published", action="store_true", help="hide the published numbers shipped with a preset")
    p.add_argument("--model", action="append", metavar="LABEL=ID", help="replace a model's id (e.g. a local stand-in)")
    p.add_argument("--dataset", action="append", metavar="LABEL=SOURCE", help="replace an evaluation dataset's source")
    p.add_argument("--calib", default=None, help="replace the calibration source (a source, a path or a mixture "
                                                 "such as web-ot:0.5,pydocs:0.5)")
    p.add_argument("--render-only", action="store_true", help="only render what the store holds, compute nothing")
    p.add_argument("--force", action="store_true", help="run even when the plan says this machine cannot hold a cell")
    add_quiet(p)


def run(args: argparse.Namespace) -> int:
    from evaluations.results_store import ResultsStore
    from scripts.grid import load_config, render, run_grid

    config = load_config(args.config).with_overrides(
        models=_pairs(args.model, "--model"), datasets=_pairs(args.dataset, "--dataset"), calib=args.calib)
    out = Path(args.out or f"ptq-table-{config.name}")
    store = ResultsStore(args.results or out / "results.jsonl")
    t0 = time.perf_counter()
    counts = {"computed": 0, "skipped": 0}
    if not args.render_only:
        from scripts.preflight import check_grid

        check_grid(config, args.force)
        counts = run_grid(config, store, log=lambda m: info(args, m), progress=not args.quiet)
    rendered = render(config, store, out, delta=args.delta, published=False if args.no_published else None)
    print(rendered.markdown, end="")
    total = time.perf_counter() - t0
    print(f"\n{config.name}: {counts['computed']} cells computed, {counts['skipped']} reused from {store.path}"
          + (f", {rendered.missing} missing" if rendered.missing else "") + f"; {total:.0f} s")
    print("wrote " + ", ".join(str(p) for p in rendered.files.values()))
    return 0
