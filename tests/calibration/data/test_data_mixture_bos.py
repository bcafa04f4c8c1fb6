"""Calibration mixtures (SOURCE:SHARE,...) and BOS at the start of calibration segments."""
from __future__ import annotations

import pytest
import torch

from calibration.data import calibration_segments, tokenize_corpus
from calibration.data.mixture import calibration_domains, is_mixture, mixture_counts, parse_mixture
from calibration.data.segments import calibration_bos, sample_windows
from calibration.data.registry import source_domain

BOS = 49_999


class BosTokenizer:
    """A word tokenizer that adds BOS in front of every text when asked for special tokens
    (as Llama 3 / Gemma tokenizers do)."""

    bos_token_id = BOS

    def __init__(self, words) -> None:
        self.words, self.name_or_path, self.vocab_size = words, "fake/bos-words", words.vocab_size

    def __call__(self, texts, add_special_tokens=True, verbose=True):
        out = self.words(texts, add_special_tokens=add_special_tokens, verbose=verbose)
        if add_special_tokens:
            ids = out["input_ids"]
            out["input_ids"] = [BOS, *ids] if isinstance(texts, str) else [[BOS, *row] for row in ids]
        return out


@pytest.fixture
def two_texts(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(" ".join(f"a{i}" for i in range(3000)), encoding="utf-8")
    b.write_text(" ".join(f"b{i}" for i in range(3000)), encoding="utf-8")
    return str(a), str(b)


def test_parse_and_counts(two_texts):
    a, b = two_texts
    parts = parse_mixture(f"{a}:0.25,{b}:0.75")
    assert [(p.source, p.share) for p in parts] == [(a, 0.25), (b, 0.75)]
    assert mixture_counts(parts, 128) == [32, 96]
    assert mixture_counts(parse_mixture(f"{a}:0.5,{b}:0.5"), 5) == [3, 2]  # largest remainder, tie to the first
    assert not is_mixture("web-ot") and parse_mixture("web-ot")[0].share == 1.0


@pytest.mark.parametrize("spec, message", [
    ("web-ot:0.5,pydocs:0.6", "shares sum to 1.1, not 1"),
    ("web-ot:-0.5,pydocs:1.5", "a share must be a number above 0"),
    ("web-ot:0,pydocs:1", "a share must be a number above 0"),
    ("web-ot:half,pydocs:0.5", "the share 'half' is not a number"),
    ("web-ot:0.5,pydocs", "has no share"),
    ("nope:0.5,web-ot:0.5", "unknown dataset 'nope'"),
    ("web-ot:0.5,web-ot:0.5", "names 'web-ot' twice"),
    ("nope", "unknown dataset 'nope'"),
])
def test_bad_mixtures_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_mixture(spec)


def test_a_share_too_small_for_nsamples():
    with pytest.raises(ValueError, match="'pydocs' gets no segment of 4"):
        mixture_counts(parse_mixture("web-ot:0.9,pydocs:0.1"), 4)


def test_single_source_gives_the_same_windows_as_before(word_tokenizer, two_texts):
    a, _ = two_texts
    segs = calibration_segments(word_tokenizer, a, nsamples=6, seqlen=16, seed=3)
    assert torch.equal(segs, sample_windows(tokenize_corpus(word_tokenizer, a, "train"), 6, 16, 3))
    assert torch.equal(segs, calibration_segments(word_tokenizer, f"{a}:1", nsamples=6, seqlen=16, seed=3))


def test_mixture_stacks_each_sources_own_seeded_windows(word_tokenizer, two_texts):
    a, b = two_texts
    mixed = calibration_segments(word_tokenizer, f"{a}:0.25,{b}:0.75", nsamples=8, seqlen=16, seed=1)
    assert mixed.shape == (8, 16)
    assert torch.equal(mixed[:2], calibration_segments(word_tokenizer, a, nsamples=2, seqlen=16, seed=1))
    assert torch.equal(mixed[2:], calibration_segments(word_tokenizer, b, nsamples=6, seqlen=16, seed=1))
    again = calibration_segments(word_tokenizer, f"{a}:0.25,{b}:0.75", nsamples=8, seqlen=16, seed=1)
    assert torch.equal(mixed, again)


def test_bos_goes_first_in_every_segment_when_the_tokenizer_adds_it(word_tokenizer, two_texts):
    a, _ = two_texts
    tok = BosTokenizer(word_tokenizer)
    assert calibration_bos(tok) == BOS
    segs = calibration_segments(tok, a, nsamples=5, seqlen=16, seed=2)
    assert segs.shape == (5, 16)
    assert (segs[:, 0] == BOS).all() and not (segs[:, 1:] == BOS).any()
    stream = tokenize_corpus(tok, a, "train").reshape(-1)  # no BOS inside the stream
    assert torch.equal(segs[:, 1:], sample_windows(stream, 5, 15, 2))  # then seqlen-1 contiguous tokens
    off = calibration_segments(tok, a, nsamples=5, seqlen=16, seed=2, bos=False)
    assert not (off == BOS).any() and torch.equal(off, sample_windows(stream, 5, 16, 2))


def test_bos_forced_on_a_tokenizer_that_does_not_add_it(word_tokenizer, two_texts):
    a, _ = two_texts
    assert calibration_bos(word_tokenizer) is None
    with pytest.raises(ValueError, match="the tokenizer has no BOS token"):
        calibration_segments(word_tokenizer, a, nsamples=2, seqlen=8, seed=0, bos=True)
    word_tokenizer.bos_token_id = 7
    assert (calibration_segments(word_tokenizer, a, nsamples=2, seqlen=8, seed=0, bos=True)[:, 0] == 7).all()


def test_domains():
    assert source_domain("web-nt") == source_domain("web-ot") == "bible"
    assert source_domain("pydocs") == "pydocs"
    assert calibration_domains("web-ot:0.5,pydocs:0.5") == {"bible", "pydocs"}
