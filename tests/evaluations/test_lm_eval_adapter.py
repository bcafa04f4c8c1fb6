"""lm-eval adapter: the offline task on a model in memory (tiny, fast) and fp32 vs RTN W4 SmolLM2 (slow)."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("lm_eval")

from evaluations.lm_eval_adapter import OFFLINE_TASKS, run_tasks  # noqa: E402
from evaluations.lm_eval_tasks.ptq_bible_lastword_utils import lastword_docs  # noqa: E402


def test_offline_task_documents_are_held_out_last_words():
    docs = lastword_docs()
    assert len(docs) > 1000
    for d in docs[:50]:
        assert d["target"].startswith(" ") and d["target"][1:].isalpha() and not d["context"].endswith(" ")
    assert docs[0]["context"].startswith("Seeing the multitudes")  # Matthew 5, the first NT test chapter


def test_adapter_runs_the_offline_task_on_a_model_in_memory(smol_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    model = LlamaForCausalLM(cfg).eval()
    res = run_tasks(model, smol_tokenizer, list(OFFLINE_TASKS), limit=4)
    m = res["ptq_bible_lastword"]
    assert m["sample_len"] == 4 and 0 <= m["acc"] <= 1
    assert m["perplexity"] > 1000  # a random model over a 49k vocabulary


@pytest.mark.slow
def test_fp32_vs_rtn_w4_accuracy_moves_with_perplexity(smol_model, one_thread):
    """RTN W4 per-channel loses perplexity on web-nt; the last-word accuracy drops with it."""
    import copy

    from calibration.recipes import Recipe
    from calibration.runner import quantize_model
    from evaluations import perplexity

    model, tok = smol_model
    q = copy.deepcopy(model)
    quantize_model(q, Recipe.from_list([{"step": "rtn", "bits": 4}]), None)
    limit = 100  # documents per model: enough for the gap between the two accuracies
    fp = run_tasks(model, tok, ["ptq_bible_lastword"], limit=limit, batch_size=8)["ptq_bible_lastword"]
    w4 = run_tasks(q, tok, ["ptq_bible_lastword"], limit=limit, batch_size=8)["ptq_bible_lastword"]
    p_fp = perplexity(model, tok, "web-nt", seqlen=512, max_windows=2).ppl
    p_w4 = perplexity(q, tok, "web-nt", seqlen=512, max_windows=2).ppl
    assert p_w4 > p_fp
    assert w4["perplexity"] > fp["perplexity"] and w4["acc"] < fp["acc"]
