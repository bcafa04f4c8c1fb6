"""Error bars in tables: a row against itself on other windows is within noise; a real change is not."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from evaluations.perplexity import perplexity_from_ids
from evaluations.tables import NOISE_MARK, build_table, to_csv, to_markdown


def _record(method, r):
    return {"method": method, "model": "tiny", "dataset": "text", "ppl": r.ppl, "ppl_se": r.ppl_se, "bos": r.bos,
            "perplexity": r.to_dict()}


@pytest.fixture(scope="module")
def runs():
    from tests.conftest import make_tiny_model

    model = make_tiny_model("llama")
    ids = torch.randint(0, 128, (1, 32 * 60), generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    noisy = copy.deepcopy(model)
    with torch.no_grad():
        for m in noisy.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.add_(4.0 * m.weight.abs().mean() * torch.randn(m.weight.shape, generator=g))
    return {
        "fp32": perplexity_from_ids(model, ids, seqlen=32, max_windows=12, window_seed=0),
        "fp32 (windows seed 1)": perplexity_from_ids(model, ids, seqlen=32, max_windows=12, window_seed=1),
        "perturbed": perplexity_from_ids(noisy, ids, seqlen=32, max_windows=12, window_seed=0),
    }


def test_a_row_against_itself_under_another_window_seed_is_within_noise(runs):
    assert runs["fp32"].window_begins != runs["fp32 (windows seed 1)"].window_begins
    table = build_table([_record(m, r) for m, r in runs.items()], list(runs), ["tiny"], ["text"], baseline="fp32")
    d, se, noise = table.compare("fp32 (windows seed 1)", "fp32", "tiny", "text")
    assert d != 0 and noise is True  # other windows: unpaired SE, and the difference is inside 2 SE
    d, se_paired, noise = table.compare("perturbed", "fp32", "tiny", "text")
    unpaired = math.hypot(runs["perturbed"].ppl_se, runs["fp32"].ppl_se)
    assert noise is False and se_paired < unpaired  # same windows: paired, tighter, and the change is real
    md = to_markdown(table, delta=True)
    row = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert row["fp32 (windows seed 1)"].rstrip(" |").endswith(NOISE_MARK.strip())
    assert NOISE_MARK.strip() not in row["perturbed"] and " ± " in row["perturbed"]
    assert "within noise" in md and "BOS in front of every window: tiny no" in md
    csv_text = to_csv(table, delta=True)
    assert "tiny/text/se" in csv_text.splitlines()[0] and "true" in csv_text and "false" in csv_text


def test_older_records_without_ses_still_render():
    old = [{"method": "fp32", "model": "M", "dataset": "d", "ppl": 10.0},
           {"method": "RTN", "model": "M", "dataset": "d", "ppl": 12.0}]
    table = build_table(old, ["fp32", "RTN"], ["M"], ["d"], baseline="fp32")
    md = to_markdown(table, delta=True)
    assert "| RTN | 12.00 | +2.00 |" in md and "±" not in md and NOISE_MARK.strip() not in md
    assert table.compare("RTN", "fp32", "M", "d") == (2.0, None, None)
