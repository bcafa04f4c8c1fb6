"""Output formats by name (``ptq``, ``gptq``, ``compressed-tensors``, ``gguf:Q4_0`` ...) and one
:func:`export` that writes a quantized model in any of them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from torch import nn

from ptq.checkpoint.gguf_blocks import QTYPES
from ptq.errors import PTQUserError

FORMATS = ("ptq", "gptq", "compressed-tensors", *(f"gguf:{t}" for t in QTYPES))


def parse_format(name: str) -> tuple[str, str | None]:
    """``"gguf:q4_0"`` -> ``("gguf", "Q4_0")``, ``"gptq"`` -> ``("gptq", None)``; ``ValueError`` naming the choices."""
    kind, _, sub = str(name).partition(":")
    kind = kind.strip().lower()
    if kind == "gguf" and sub.upper() in QTYPES:
        return "gguf", sub.upper()
    if kind in ("ptq", "gptq", "compressed-tensors") and not sub:
        return kind, None
    raise PTQUserError(f"unknown format {name!r}; choose one of {', '.join(FORMATS)}")


def export(model: nn.Module, directory: str | Path, fmt: str, records: Mapping[str, Any] | None = None,
           tokenizer: Any = None, extra: dict[str, Any] | None = None, overwrite: bool = False,
           tokenizer_gguf: str | Path | None = None) -> Path:
    """Write ``model`` (fake-quantized with ``records``, or with quantized modules) in format ``fmt``."""
    kind, qtype = parse_format(fmt)
    if kind == "gguf":
        from ptq.checkpoint.gguf_format import export_gguf

        return export_gguf(model, directory, qtype or "Q4_0", records, tokenizer=tokenizer,
                           tokenizer_gguf=tokenizer_gguf, extra=extra, overwrite=overwrite)
    if kind == "compressed-tensors":
        from ptq.checkpoint.compressed_tensors_format import export_compressed_tensors

        return export_compressed_tensors(model, directory, records, tokenizer=tokenizer, extra=extra, overwrite=overwrite)
    from ptq.checkpoint.gptq_format import export_gptq
    from ptq.checkpoint.save import save_quantized

    writer = export_gptq if kind == "gptq" else save_quantized
    return writer(model, directory, records, tokenizer=tokenizer, extra=extra, overwrite=overwrite)
