"""Integration on the real SmolLM2-135M (offline GGUF): RTN and GPTQ perplexity, measured.

Marked ``slow`` (a few minutes on 2 cores); ``make test-fast`` skips them. Evaluation uses
fewer windows than the paper-style tables (web-nt, 8 windows of 512 tokens) to stay fast.
"""
from __future__ import annotations

import copy

import pytest

from calibration.data import calibration_segments
from calibration.recipes import Recipe
from calibration.runner import quantize_model
from evaluations import perplexity

pytestmark = pytest.mark.slow
WINDOWS = 8


@pytest.fixture(scope="module")
def fp32_ppl(smol_model):
    model, tok = smol_model
    return perplexity(model, tok, "web-nt", seqlen=512, max_windows=WINDOWS).ppl


def quantized_ppl(smol_model, steps, segments=None):
    model, tok = smol_model
    q = copy.deepcopy(model)
    quantize_model(q, Recipe.from_list(steps), segments, progress=False)
    return perplexity(q, tok, "web-nt", seqlen=512, max_windows=WINDOWS).ppl


def test_rtn_w8_within_one_percent_and_w4_clearly_worse(smol_model, fp32_ppl):
    w8 = quantized_ppl(smol_model, [{"step": "rtn", "bits": 8}])
    w4 = quantized_ppl(smol_model, [{"step": "rtn", "bits": 4}])
    print(f"fp32 {fp32_ppl:.3f}  RTN W8 {w8:.3f}  RTN W4 {w4:.3f}")
    assert abs(w8 / fp32_ppl - 1) < 0.01
    assert w4 > 1.05 * fp32_ppl and w4 > w8


def test_gptq_w4_beats_rtn_w4(smol_model, fp32_ppl):
    _, tok = smol_model
    segments = calibration_segments(tok, "web-ot", nsamples=8, seqlen=512, seed=0)
    rtn = quantized_ppl(smol_model, [{"step": "rtn", "bits": 4}])
    # one forward pass per block (true-sequential GPTQ): the real model through the staged runner, and the
    # cheapest GPTQ run there is
    gptq = quantized_ppl(smol_model, [{"step": "gptq", "bits": 4, "act_order": True, "passes": "one"}], segments)
    print(f"fp32 {fp32_ppl:.3f}  RTN W4 {rtn:.3f}  GPTQ W4 {gptq:.3f}")
    assert fp32_ppl < gptq < 0.9 * rtn
