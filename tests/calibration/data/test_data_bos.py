"""bos_token_id: decided by what the tokenizer does with special tokens."""
from __future__ import annotations

import copy

from calibration.data.bos import bos_token_id


def test_smollm2_has_a_bos_token_but_does_not_add_it(smol_tokenizer):
    assert smol_tokenizer.bos_token_id is not None
    assert bos_token_id(smol_tokenizer) is None


class _Adds:
    """A tokenizer that puts its BOS (id 7) in front of every text."""

    bos_token_id = 7

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": ([7] if add_special_tokens else []) + [ord(c) for c in text]}


def test_a_tokenizer_that_prepends_bos_gives_its_id():
    assert bos_token_id(_Adds()) == 7
    no_bos = copy.copy(_Adds())
    no_bos.bos_token_id = None
    assert bos_token_id(no_bos) is None
