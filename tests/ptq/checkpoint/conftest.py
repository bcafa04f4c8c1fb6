"""Fixtures of the checkpoint tests (the helpers they use live in ckpt_helpers.py)."""
from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from ckpt_helpers import make_bpe_tokenizer, make_tokenizer


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matmuls: one intra-op thread (a busy shared machine makes 2 threads ~100x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tokenizer() -> PreTrainedTokenizerFast:
    return make_tokenizer()


@pytest.fixture
def bpe_tokenizer() -> PreTrainedTokenizerFast:
    return make_bpe_tokenizer(3 + 256 + 6)
