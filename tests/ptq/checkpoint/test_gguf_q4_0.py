"""``--qparams q4_0`` to ``gguf:Q4_0``: RTN writes exactly the tensors the ``gguf`` package's own quantizer
makes of the float weights (on a tiny Llama through the CLI, and on real SmolLM2 layers), GPTQ on the same
grid exports, and a block needing the -8 level on its positive side is written with a negative ``d``."""
from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from ckpt_helpers import make_bpe_tokenizer
from test_checkpoint_cli import run
from test_export_cli import corpus  # noqa: F401  (a fixture: a tiny calibration text)
from transformers import AutoModelForCausalLM, LlamaConfig

from ptq import QuantSpec
from ptq.algorithms.rtn import rtn_qparams
from ptq.checkpoint.gguf_blocks import misfit, pack_blocks
from ptq.checkpoint.gguf_format import head_permutation
from ptq.checkpoint.layer_grid import LayerGrid, layer_grid
from ptq.modules import QuantLinear

Q4_0 = QuantSpec(4, granularity="group", group_size=32, scale_dtype="float16")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    tok = make_bpe_tokenizer(3 + 256 + 6)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def expected_q4_0(model_dir) -> dict[str, np.ndarray]:
    """The gguf package's Q4_0 of each float block weight, q/k rows permuted as llama.cpp stores them."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg, out = model.config, {}
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and ".layers." in name:
            W = m.weight.detach().float()
            heads = {"q_proj": cfg.num_attention_heads, "k_proj": cfg.num_key_value_heads}.get(name.rsplit(".", 1)[1])
            if heads:
                W = W[head_permutation(W.shape[0], heads)]
            out[names.get_name(name)] = gguf.quants.quantize(W.numpy(), gguf.GGMLQuantizationType.Q4_0)
    return out


def test_cli_rtn_q4_0_writes_gguf_package_q4_0(model_dir, corpus, tmp_path, capsys):
    code, _, err = run(["quantize", model_dir, "--method", "rtn", "--bits", 4, "--group-size", 32, "--qparams", "q4_0",
                        "--format", "gguf:Q4_0", "--output", tmp_path / "g", "--quiet"], capsys)
    assert code == 0, err
    tensors = {t.name: t for t in gguf.GGUFReader(tmp_path / "g" / "model.gguf").tensors}
    expected = expected_q4_0(model_dir)
    assert len(expected) == 14
    for name, data in expected.items():
        assert tensors[f"{name}.weight"].tensor_type.name == "Q4_0"
        assert np.array_equal(np.asarray(tensors[f"{name}.weight"].data).reshape(data.shape), data), name


def test_cli_gptq_q4_0_act_order_static_groups_exports(model_dir, corpus, tmp_path, capsys):
    code, _, err = run(["quantize", model_dir, "--method", "gptq", "--bits", 4, "--group-size", 32, "--qparams", "q4_0",
                        "--act-order", "--static-groups", "--diag-shrink", 0.25, "--format", "gguf:Q4_0",
                        "--calib", corpus, "--nsamples", 4, "--seqlen", 32, "--output", tmp_path / "g", "--quiet"], capsys)
    assert code == 0, err
    types = {t.tensor_type.name for t in gguf.GGUFReader(tmp_path / "g" / "model.gguf").tensors if "ffn_up" in t.name}
    assert types == {"Q4_0"}


def test_negative_d_blocks():
    """q - zero spanning -7..8 (zero 7) is written as d = -scale, c = 8 - (q - zero); -8..7 as d = scale;
    -3..12 (an asymmetric min-max zero) fits neither."""
    scale = torch.full((2, 2), 0.25)
    zero = torch.tensor([[7.0, 8.0], [7.0, 8.0]])
    codes = torch.tensor([[15] * 16 + [0] * 16 + [0] * 16 + [15] * 16,
                          [3] * 32 + [8] * 32])
    grid = LayerGrid(codes, scale, zero, torch.arange(64) // 32, Q4_0)
    blocks = pack_blocks(grid, "Q4_0")
    d = blocks.reshape(2, 2, 18)[..., :2].copy().view(np.float16)[..., 0]
    assert np.array_equal(d, np.array([[-0.25, 0.25], [0.25, 0.25]], np.float16))
    deq = gguf.quants.dequantize(blocks, gguf.GGMLQuantizationType.Q4_0)
    assert np.array_equal(deq, grid.dequantize().numpy())
    bad = LayerGrid(torch.tensor([[0] + [15] * 31]), torch.full((1, 1), 0.25), torch.full((1, 1), 3.0),
                    torch.zeros(32, dtype=torch.int64), Q4_0)
    assert "span -3..12 in a block" in misfit(bad, "Q4_0") and "or -7..8 with a negative d" in misfit(bad, "Q4_0")


@pytest.mark.slow
def test_smollm2_layers_rtn_q4_0_equal_gguf_q4_0(smol_model):
    """Real SmolLM2 weights (dequantized Q4_1: many exact ties): the first and last blocks' seven layers."""
    model, _ = smol_model
    layers = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
              and (".layers.0." in n or f".layers.{model.config.num_hidden_layers - 1}." in n)]
    assert len(layers) == 14
    for m in layers:
        W = m.weight.detach().float()
        q = rtn_qparams(W, Q4_0, "q4_0")
        lin = torch.nn.Linear(W.shape[1], W.shape[0], bias=False)
        lin.weight.data.copy_(q.weight)
        ours = pack_blocks(layer_grid(QuantLinear.from_float(lin, Q4_0, q.scale, q.zero)), "Q4_0")
        assert np.array_equal(ours, gguf.quants.quantize(W.numpy(), gguf.GGMLQuantizationType.Q4_0))
