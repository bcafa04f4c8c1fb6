"""Serving formats read back by the real loaders, side by side in one run: perplexity and file size.

For a ptq checkpoint (e.g. GPTQ W4 g32 symmetric, float16 scales):

* ``ptq``: the checkpoint through ptq's loader (``ptq eval``'s path);
* ``gguf:Q4_0 (transformers)``: exported with :func:`ptq.checkpoint.formats.export`, loaded by
  ``transformers`` ``from_pretrained(..., gguf_file=)``; ``compressed-tensors (transformers)``: the
  same with plain ``from_pretrained`` of the compressed-tensors folder;
* ``Q4_0 by gguf.quants (RTN)``: the float model's block linears quantized by the ``gguf``
  package's own Q4_0 quantizer (``gguf.quants.quantize``, llama.cpp's reference: plain round to
  nearest in blocks of 32) and dequantized by it (what ``transformers`` computes when it loads such
  a file), in memory;
* ``float``: the unquantized model.

Sizes: the GGUF file against the tensor data alone as llama.cpp defines each type (theoretical).

    python -m scripts.bench_serving_formats CHECKPOINT [--datasets web-nt pydocs] [--max-windows 40] [--keep DIR]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch


ROWS = ("ptq", "gguf", "compressed-tensors", "float", "gguf-rtn")


def gguf_rtn_q4_0(model: torch.nn.Module) -> int:
    """Quantize every block ``nn.Linear`` of ``model`` in place with ``gguf.quants`` Q4_0 (round trip)."""
    import gguf

    n = 0
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and ".layers." in name:
            W = m.weight.detach().float().numpy()
            q = gguf.quants.quantize(W, gguf.GGMLQuantizationType.Q4_0)
            m.weight.data.copy_(torch.from_numpy(gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q4_0)))
            n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a ptq checkpoint folder (ptq quantize --format ptq)")
    p.add_argument("--model", default="smollm2-135m", help="the float model it was quantized from")
    p.add_argument("--datasets", nargs="+", default=["web-nt", "pydocs"])
    p.add_argument("--max-windows", type=int, default=40)
    p.add_argument("--seqlen", type=int, default=512)
    p.add_argument("--qtype", default="Q4_0")
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS),
                   help="rows to evaluate (default all; split them over processes on a busy machine)")
    p.add_argument("--keep", default=None, help="write the exported folders here instead of a temporary folder")
    args = p.parse_args()

    from transformers import AutoModelForCausalLM

    from calibration.models import load_model
    from evaluations import perplexity
    from ptq.checkpoint import load_quantized
    from ptq.checkpoint.formats import export
    from ptq.checkpoint.gguf_format import GGUF_NAME, theoretical_bytes
    from ptq.modules.swap import quantized_modules
    from scripts.commands.common import source_gguf
    from scripts.commands.export import read_report

    torch.set_num_threads(1)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="ptq-serve-"))
    qmodel, tok = load_quantized(args.checkpoint)
    src = source_gguf(read_report(Path(args.checkpoint)).get("model"), qmodel.config.vocab_size)
    gdir, cdir = work / f"gguf-{args.qtype}", work / "compressed-tensors"
    export(qmodel, gdir, f"gguf:{args.qtype}", tokenizer=tok, tokenizer_gguf=src, overwrite=True)
    export(qmodel, cdir, "compressed-tensors", tokenizer=tok, overwrite=True)
    import gguf

    file_bytes = (gdir / GGUF_NAME).stat().st_size
    data_bytes = file_bytes - gguf.GGUFReader(gdir / GGUF_NAME).data_offset
    tensor_bytes = theoretical_bytes(qmodel, quantized_modules(qmodel), args.qtype)

    qm = quantized_modules(qmodel)
    ct_theory = sum(m.in_features * m.out_features * m.spec.bits // 8 + m.scales.numel() * 4 for m in qm.values())
    ct_theory += sum(t.numel() * t.element_size() for k, t in qmodel.state_dict().items()
                     if not k.startswith(tuple(f"{n}." for n in qm)) and not k.startswith("lm_head."))
    ct_bytes = (cdir / "model.safetensors").stat().st_size

    def models():
        if "ptq" in args.rows:
            yield "ptq (ptq's loader)", qmodel
        if "gguf" in args.rows:
            yield f"gguf:{args.qtype} (transformers gguf_file=)", AutoModelForCausalLM.from_pretrained(
                gdir, gguf_file=GGUF_NAME, dtype=torch.float32).eval()
        if "compressed-tensors" in args.rows:
            yield "compressed-tensors (transformers)", AutoModelForCausalLM.from_pretrained(cdir, dtype=torch.float32).eval()
        if "float" in args.rows or "gguf-rtn" in args.rows:
            fmodel, _ = load_model(args.model)
            if "float" in args.rows:
                yield "float", fmodel
            if "gguf-rtn" in args.rows:
                gguf_rtn_q4_0(fmodel)
                yield "Q4_0 by gguf.quants (RTN)", fmodel

    print(f"| model | {' | '.join(args.datasets)} |\n|---|{'---|' * len(args.datasets)}")
    for label, model in models():
        ppl = [perplexity(model, tok, ds, seqlen=args.seqlen, max_windows=args.max_windows).ppl for ds in args.datasets]
        print(f"| {label} | {' | '.join(f'{x:.4f}' for x in ppl)} |", flush=True)
    print(f"\nGGUF file {file_bytes} bytes: tensor data {data_bytes} bytes, theoretical (llama.cpp's type sizes) "
          f"{tensor_bytes} (ratio {data_bytes / tensor_bytes:.5f}); header + metadata {file_bytes - data_bytes} bytes. "
          f"Perplexity: {args.max_windows} windows of {args.seqlen}")
    print(f"compressed-tensors model.safetensors {ct_bytes} bytes; theoretical (codes at bits/8, float32 scales, "
          f"float tensors) {ct_theory} (ratio {ct_bytes / ct_theory:.5f})")


if __name__ == "__main__":
    main()
