"""Whether a model expects a BOS token in front of every sequence, and which.

Models trained with a BOS token at the start of every sequence (the Llama 3 and Gemma
families, among others) are evaluated and calibrated with it: their tokenizer adds it
when asked for special tokens. The GPTQ papers' protocol feeds raw windows with no BOS;
that stays available (``bos=False`` where an API takes it) to reproduce their tables.
"""
from __future__ import annotations

from typing import Any

from ptq.errors import PTQUserError

__all__ = ["bos_token_id", "choose_bos"]


def bos_token_id(tokenizer: Any) -> int | None:
    """The id the tokenizer puts in front of every encoded text, or ``None`` if it adds none.

    Decided by what the tokenizer does, not by a flag name: ``tokenizer("a")`` with special
    tokens starts with ``tokenizer.bos_token_id`` (``add_bos_token``, or a post-processor that
    prepends it). A tokenizer that has a BOS token but does not add it (GPT-2, SmolLM2) gives
    ``None``: such a model was not trained with one in front of every sequence.
    """
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    encoded = tokenizer("a", add_special_tokens=True)
    ids = encoded["input_ids"] if not isinstance(encoded, list) else encoded
    return int(bos) if len(ids) and int(ids[0]) == int(bos) else None


def choose_bos(tokenizer: Any, bos: bool | None, missing: str) -> int | None:
    """The BOS id to put in front of every sequence: ``None`` (auto) follows what the tokenizer adds
    (:func:`bos_token_id`), ``False`` none (the papers' protocol), ``True`` the tokenizer's BOS token even
    if it does not add it; ``missing`` is the user's message when ``True`` meets a tokenizer without one."""
    if bos is None:
        return bos_token_id(tokenizer)
    if not bos:
        return None
    token = getattr(tokenizer, "bos_token_id", None)
    if token is None:
        raise PTQUserError(missing)
    return int(token)
