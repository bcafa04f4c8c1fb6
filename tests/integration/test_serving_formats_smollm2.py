"""The real SmolLM2-135M quantized by ptq, exported, and read back by the real loaders:
``transformers`` ``gguf_file=`` (GGUF Q4_0) and plain ``from_pretrained`` (compressed-tensors).
The perplexity equals ``ptq eval``'s within 0.1 % (the weights are equal, so it is equal); the GGUF
tensor data is within 1 % of its size as llama.cpp defines the types (the rest of the file is the
header and metadata, mostly the 49152-token tokenizer). Lean: RTN (no
calibration), 2 windows of 512 tokens of web-nt."""
from __future__ import annotations

import copy

import gguf
import pytest
import torch

from calibration.recipes import Recipe
from calibration.runner import quantize_model
from evaluations import perplexity
from ptq.checkpoint import export, load_quantized
from ptq.checkpoint.gguf_blocks import BLOCK_BYTES
from ptq.checkpoint.gguf_format import GGUF_NAME, theoretical_bytes
from ptq.modules.swap import quantized_modules
from scripts.commands.common import source_gguf

pytestmark = pytest.mark.slow
WINDOWS = 2


def test_gguf_and_compressed_tensors_read_back_equal(smol_model, tmp_path):
    pytest.importorskip("compressed_tensors")
    from transformers import AutoModelForCausalLM

    model, tok = smol_model
    q = copy.deepcopy(model)
    result = quantize_model(q, Recipe.from_list([{"step": "rtn", "bits": 4, "symmetric": True, "granularity": "group",
                                                  "group_size": 32}]), None, progress=False)
    export(q, tmp_path / "ptq", "ptq", result.records, tokenizer=tok)
    ours, _ = load_quantized(tmp_path / "ptq")
    export(ours, tmp_path / "gguf", "gguf:Q4_0", tokenizer=tok,
           tokenizer_gguf=source_gguf("smollm2-135m", ours.config.vocab_size))
    export(ours, tmp_path / "ct", "compressed-tensors", tokenizer=tok)

    ppl = lambda m: perplexity(m, tok, "web-nt", seqlen=512, max_windows=WINDOWS).ppl  # noqa: E731
    ref = ppl(ours)
    from_gguf = AutoModelForCausalLM.from_pretrained(tmp_path / "gguf", gguf_file=GGUF_NAME, dtype=torch.float32).eval()
    from_ct = AutoModelForCausalLM.from_pretrained(tmp_path / "ct", dtype=torch.float32).eval()
    p_gguf, p_ct = ppl(from_gguf), ppl(from_ct)
    print(f"ptq {ref:.4f}  gguf:Q4_0 via transformers {p_gguf:.4f}  compressed-tensors via transformers {p_ct:.4f}")
    assert abs(p_gguf / ref - 1) < 1e-3 and abs(p_ct / ref - 1) < 1e-3

    reader = gguf.GGUFReader(tmp_path / "gguf" / GGUF_NAME)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert {types[f"blk.{i}.{k}.weight"] for i in range(30) for k in ("attn_q", "attn_k", "ffn_down")} == {"Q4_0"}
    assert types["token_embd.weight"] == "Q8_0"  # the embedding read from the Q8_0 source GGUF, lossless
    assert all(t.n_bytes == t.n_elements // 32 * BLOCK_BYTES[t.tensor_type.name]
               for t in reader.tensors if t.tensor_type.name in BLOCK_BYTES)
    data = (tmp_path / "gguf" / GGUF_NAME).stat().st_size - reader.data_offset  # after header, metadata, tokenizer
    assert abs(data / theoretical_bytes(ours, quantized_modules(ours), "Q4_0") - 1) < 0.01
