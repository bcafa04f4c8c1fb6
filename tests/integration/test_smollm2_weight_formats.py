"""HQQ and NF4 on the real SmolLM2-135M weights (offline GGUF): weight errors and a packed checkpoint.

Marked ``slow`` (needs the real model); no perplexity evaluation, so it stays quick.
"""
from __future__ import annotations

import copy

import pytest
import torch

from calibration.models.blocks import find_decoder_blocks, find_linear_layers, linear_weight
from calibration.recipes import Recipe
from calibration.runner import quantize_model
from ptq import QuantSpec
from ptq.algorithms import hqq, rtn

pytestmark = pytest.mark.slow


def block_weights(model, nblocks: int = 4):
    """The linear weights of the first ``nblocks`` decoder blocks (a sample keeps the test quick)."""
    _, blocks = find_decoder_blocks(model)
    return [linear_weight(m).detach().float() for b in list(blocks)[:nblocks] for m in find_linear_layers(b).values()]


@pytest.mark.parametrize("bits", [3, 4])
def test_hqq_lowers_every_layers_weight_error(smol_model, bits):
    spec = QuantSpec(bits=bits, granularity="group", group_size=64, scale_dtype="float16")
    worse = 0
    weights = block_weights(smol_model[0])
    for W in weights:
        e_rtn = float((W - rtn(W, spec).weight).abs().mean())
        e_hqq = float((W - hqq(W, spec).weight).abs().mean())
        worse += e_hqq >= e_rtn
    assert worse == 0, f"HQQ W{bits} g64 did not lower the mean |W - Q| of {worse} of {len(weights)} layers"


def test_nf4_double_quant_checkpoint(smol_model, tmp_path):
    from evaluations.footprint import footprint
    from ptq.checkpoint import load_quantized, save_quantized

    model, tok = smol_model
    q = copy.deepcopy(model)
    result = quantize_model(q, Recipe.from_list([{"step": "rtn", "weight_format": "nf4", "double_quant": True}]),
                            None, progress=False)
    save_quantized(q, tmp_path / "nf4", result.records, tokenizer=tok)
    loaded, _ = load_quantized(tmp_path / "nf4")
    fp = footprint(loaded)
    assert fp.quantized_bits_per_weight == pytest.approx(4 + 8 / 64, abs=0.01)  # + absmax2 / offset: < 0.01
    ids = tok("In the beginning God created the heavens and the earth.", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, q(ids).logits, rtol=0, atol=1e-4)
