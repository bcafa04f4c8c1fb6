"""Tokenizer metadata of a GGUF file (``tokenizer.ggml.*``, ``tokenizer.chat_template``).

Either copied key by key from the GGUF the model came from (the exact tokenizer llama.cpp
already reads for it), or built from a Hugging Face BPE tokenizer folder the way llama.cpp's
``convert_hf_to_gguf.py`` does for gpt2-style tokenizers: ``tokenizer.ggml.model = "gpt2"``,
tokens in id order, token types (CONTROL for special added tokens, USER_DEFINED for other added
tokens, NORMAL otherwise), and merges / special ids / ``add_bos_token`` / chat template through
the ``gguf`` package's :class:`gguf.SpecialVocab`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any
from ptq.errors import PTQUserError

TOKENIZER_PREFIX = "tokenizer."


def copy_tokenizer_fields(source: str | Path, writer: Any) -> int:
    """Copy every ``tokenizer.*`` key of the GGUF file ``source`` into ``writer``; returns how many."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    n = 0
    for key, field in reader.fields.items():
        if not key.startswith(TOKENIZER_PREFIX):
            continue
        main = field.types[0]
        sub = field.types[-1] if main == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), main, sub_type=sub)
        n += 1
    return n


def gguf_vocab_size(source: str | Path) -> int | None:
    """Number of tokens in ``tokenizer.ggml.tokens`` of a GGUF file (``None`` if it has none)."""
    import gguf

    field = gguf.GGUFReader(str(source)).fields.get("tokenizer.ggml.tokens")
    return None if field is None else len(field.data)


def add_hf_tokenizer(tokenizer: Any, folder: str | Path, writer: Any, vocab_size: int) -> None:
    """Tokenizer keys built from a ``transformers`` fast BPE tokenizer saved in ``folder``."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    model_type = type(backend.model).__name__ if backend is not None else None
    if model_type != "BPE":
        raise PTQUserError(f"GGUF export builds tokenizer metadata for BPE tokenizers only, not {model_type}; "
                         "export a model loaded from a .gguf file, or use --format compressed-tensors|ptq")
    vocab = tokenizer.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    added = {t.content: t for t in tokenizer.added_tokens_decoder.values()}
    tokens, types = [], []
    for i in range(vocab_size):
        tok = by_id.get(i, f"[PAD{i}]")
        tokens.append(tok)
        if i not in by_id:
            types.append(gguf.TokenType.UNUSED)
        elif tok in added:
            types.append(gguf.TokenType.CONTROL if added[tok].special else gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(Path(folder), load_merges=True, n_vocab=vocab_size).add_to_gguf(writer, quiet=True)
