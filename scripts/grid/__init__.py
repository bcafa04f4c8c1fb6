"""Experiment grids (``ptq table``): config, runner (calls the quantizer), rendering, presets.

Public API::

    load_config(path_or_preset) -> GridConfig
    run_grid(config, ResultsStore(path), log=print) -> {"computed": n, "skipped": m}
    render(config, store, out_dir, delta=False, published=None) -> Rendered (markdown, files)
"""
from scripts.grid.config import GridConfig, available_presets, load_config, parse_config
from scripts.grid.render import Rendered, render
from scripts.grid.runner import plan_cells, run_grid

__all__ = ["GridConfig", "Rendered", "available_presets", "load_config", "parse_config", "plan_cells", "render",
           "run_grid"]
