"""Quantize a tiny random Llama with several recipes and save what came out (rank 0 writes).

``python tests/calibration/runner/dist_worker.py OUT.pt`` - run alone, or once per rank
(tests/dist_launch.py) for the data-parallel run: both must give the same models.
"""
from __future__ import annotations

import sys

import torch

RECIPES = {  # GPTQ's Hessians and solves; observers (max-abs, min-max) and a search loss; AWQ's losses and inputs
    "gptq": "gptq w4 g32 act-order true-sequential",
    "sq-static": "smoothquant alpha=auto act=static search_samples=4 + w8a8 act=static mode=fake",  # rank 1: none
    "awq": "activation-stats + awq n_grid=8 + rtn w4 g32",  # searches on 8 segments: 6 + 2
}


def tiny_llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(cfg).eval()


def run_all() -> dict:
    from calibration import distributed
    from calibration.recipes.recipe import as_recipe
    from calibration.runner import quantize_model

    segments = torch.randint(0, 128, (12, 24), generator=torch.Generator().manual_seed(1))
    out = {}
    for name, text in RECIPES.items():
        model = tiny_llama()
        result = quantize_model(model, as_recipe(text), segments, batch_size=4, progress=False)
        out[name] = {"state": {k: v.clone() for k, v in model.state_dict().items()},
                     "steps": result.steps, "errors": {k: r.error for k, r in result.records.items()},
                     "rank": distributed.rank()}
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    from calibration import distributed

    distributed.init(60)
    try:
        results = run_all()
        if distributed.is_main():
            torch.save(results, sys.argv[1])
    finally:
        distributed.destroy()
