"""Tokenize a whole split once, with a small in-process cache.

The perplexity protocol and calibration sampling both want the split as one token
stream: the documents joined with the source's joiner and tokenized with no special
tokens (no BOS at the start, none in the middle). Long texts are cut into chunks of
whole documents at places where cutting cannot change the tokens (see
:func:`tokenize_documents`), and the tokenizer's "sequence longer than max length"
warning is suppressed: the stream is meant to be longer than the model's context.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator, Sequence

import torch

from .corpus import Source, resolve_source, source_key
from .registry import source_documents
from .splits import canonical_split

__all__ = ["tokenize_corpus", "tokenize_documents", "clear_token_cache", "CACHE_SIZE"]

#: Number of tokenized splits kept in memory (least recently used evicted first).
CACHE_SIZE = 8
#: Target size of one chunk of text, in characters.
CHUNK_CHARS = 100_000
#: Chunks per tokenizer call.
ENCODE_GROUP = 8

_CACHE: OrderedDict[tuple[object, ...], torch.Tensor] = OrderedDict()

_PROBE_LEFT = "The first document ends here, after 12 words and a full stop."
_PROBE_RIGHT = "Then the second one starts: 'quoted', (parenthesised) and 3.14."


def clear_token_cache() -> None:
    """Forget every cached tokenization."""
    _CACHE.clear()


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text: no special tokens, no over-length warning."""
    if not texts:
        return []
    encoded = tokenizer(texts, add_special_tokens=False, verbose=False)
    ids = encoded["input_ids"] if not isinstance(encoded, list) else encoded
    return [list(row) for row in ids]


def _cut_is_safe(tokenizer: Any, joiner: str) -> bool:
    """Whether tokenizing ``left`` and ``ws + right`` apart equals tokenizing them together.

    True for byte-level BPE tokenizers (GPT-2, Llama 3, SmolLM2) whose pre-tokenizer
    always splits between a non-space and a space; False for tokenizers that prepend a
    space to every call (SentencePiece), which then get the text in one call.
    """
    starts = {" ", "\n\n"} | ({joiner} if joiner[:1].isspace() else set())
    for start in sorted(starts):
        left, right = _PROBE_LEFT, start + _PROBE_RIGHT
        together, left_ids, right_ids = _encode(tokenizer, [left + right, left, right])
        if together != left_ids + right_ids:
            return False
    return True


def _chunks(documents: Sequence[str], joiner: str, chunk_chars: int) -> Iterator[str]:
    """``joiner.join(documents)`` in pieces, cut only between a non-space and a space."""
    current: list[str] = []
    size = 0
    for index, document in enumerate(documents):
        piece = document if index == 0 else joiner + document
        if (
            size >= chunk_chars
            and piece[:1].isspace()
            and current
            and current[-1][-1:]
            and not current[-1][-1:].isspace()
        ):
            yield "".join(current)
            current, size = [], 0
        if piece:
            current.append(piece)
            size += len(piece)
    if current:
        yield "".join(current)


def tokenize_documents(
    tokenizer: Any, documents: Sequence[str], joiner: str = "\n\n", chunk_chars: int = CHUNK_CHARS
) -> torch.Tensor:
    """Token ids of ``joiner.join(documents)`` as a 1-D ``torch.long`` tensor, tokenized in
    chunks when that is exact.

    Chunks hold whole documents and are cut only where the text goes from a non-space
    to a space character, and only when a probe shows the tokenizer gives the same ids
    for the two halves as for the whole; otherwise the text is tokenized in one call.
    The tokenizer gets :data:`ENCODE_GROUP` chunks per call (a fast tokenizer encodes them
    in parallel), and each call's ids become a tensor at once: the per-token objects of a
    whole corpus (encodings, Python ints) are never alive together.
    """
    documents = list(documents)
    if _cut_is_safe(tokenizer, joiner):
        texts = list(_chunks(documents, joiner, chunk_chars))
    else:
        texts = [joiner.join(documents)]
    parts = [torch.tensor(row, dtype=torch.long)
             for start in range(0, len(texts), ENCODE_GROUP)
             for row in _encode(tokenizer, texts[start:start + ENCODE_GROUP])]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)


def _tokenizer_key(tokenizer: Any) -> tuple[object, object]:
    name = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__qualname__
    vocab = getattr(tokenizer, "vocab_size", None)
    if vocab is None and hasattr(tokenizer, "__len__"):
        vocab = len(tokenizer)
    return str(name), vocab


def tokenize_corpus(tokenizer: Any, source: Source, split: str) -> torch.Tensor:
    """The whole split tokenized once: a ``torch.long`` tensor of shape ``[1, N]``.

    The split's documents are joined with the source's joiner (as :func:`load_text`)
    and tokenized **without special tokens**: no BOS is added, at the start or between
    chunks. Results are cached in-process per (tokenizer ``name_or_path``, vocabulary
    size, source, split), at most :data:`CACHE_SIZE` entries, so evaluation and
    calibration share one tokenization; local files are re-read when they change.
    The caller gets its own copy of the cached tensor.

    Args:
        tokenizer: a Hugging Face tokenizer, or any callable taking a list of texts and
            ``add_special_tokens`` / ``verbose`` keywords and returning ``input_ids``.
        source: registered name or local path (see :func:`load_split`).
        split: ``train`` / ``test`` or an alias.
    """
    split = canonical_split(split)
    key = (*_tokenizer_key(tokenizer), source_key(source), split)
    cached = _CACHE.get(key)
    if cached is None:
        resolved = resolve_source(source)
        documents = source_documents(resolved, split)
        cached = tokenize_documents(tokenizer, documents, resolved.joiner).reshape(1, -1)
        _CACHE[key] = cached
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return cached.clone()
