"""tokenize_corpus (cache, chunking, no special tokens) and calibration_segments."""

from __future__ import annotations

import random

import pytest
import torch

from calibration.data import calibration_segments, load_text, tokenize_corpus
from calibration.data.tokens import CACHE_SIZE, _CACHE, tokenize_documents


@pytest.fixture
def corpus(tmp_path):
    """A local folder: 10 files of 60 distinct words each -> 8 train files, 480 tokens."""
    for i in range(10):
        words = " ".join(f"w{i}_{j}" for j in range(60))
        (tmp_path / f"doc{i:02d}.txt").write_text(words + "\n", encoding="utf-8")
    return str(tmp_path)


def test_tokenize_corpus_shape_and_content(word_tokenizer, corpus):
    ids = tokenize_corpus(word_tokenizer, corpus, "train")
    assert ids.dtype == torch.long and ids.shape == (1, 480)
    words = load_text(corpus, "train").split()
    assert ids[0].tolist() == [word_tokenizer.vocab[w] for w in words]


def test_tokenize_corpus_is_cached_per_source_and_split(word_tokenizer, corpus):
    first = tokenize_corpus(word_tokenizer, corpus, "train")
    calls = word_tokenizer.calls
    again = tokenize_corpus(word_tokenizer, corpus, "calibration")
    assert word_tokenizer.calls == calls and torch.equal(first, again)
    again[0, 0] = -1  # callers get a copy: the cache is not corrupted
    assert tokenize_corpus(word_tokenizer, corpus, "train")[0, 0] != -1
    tokenize_corpus(word_tokenizer, corpus, "test")
    assert word_tokenizer.calls > calls


def test_cache_is_bounded(word_tokenizer, tmp_path):
    for i in range(CACHE_SIZE + 3):
        path = tmp_path / f"f{i}.txt"
        path.write_text(f"text number {i}\n", encoding="utf-8")
        tokenize_corpus(word_tokenizer, str(path), "train")
    assert len(_CACHE) == CACHE_SIZE


def test_changed_local_file_is_retokenized(word_tokenizer, tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("one two\n", encoding="utf-8")
    assert tokenize_corpus(word_tokenizer, str(path), "test").shape == (1, 2)
    path.write_text("one two three four\n", encoding="utf-8")
    assert tokenize_corpus(word_tokenizer, str(path), "test").shape == (1, 4)


def test_chunked_tokenization_equals_one_call(word_tokenizer):
    docs = [f"doc {i} " * (i % 7) + "end." for i in range(200)] + ["", " lead space", "tail "]
    chunked = tokenize_documents(word_tokenizer, docs, "\n\n", chunk_chars=50)  # > ENCODE_GROUP calls
    assert chunked.dtype == torch.long and chunked.tolist() == word_tokenizer("\n\n".join(docs))["input_ids"]
    assert tokenize_documents(word_tokenizer, [], "\n\n").shape == (0,)


def test_segments_deterministic_and_seeded(word_tokenizer, corpus):
    a = calibration_segments(word_tokenizer, corpus, nsamples=6, seqlen=32, seed=0)
    b = calibration_segments(word_tokenizer, corpus, nsamples=6, seqlen=32, seed=0)
    c = calibration_segments(word_tokenizer, corpus, nsamples=6, seqlen=32, seed=1)
    assert a.shape == (6, 32) and a.dtype == torch.long
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_segments_match_gptq_windows_and_leave_global_rng(word_tokenizer, corpus):
    random.seed(123)
    before = random.random()
    random.seed(123)
    segments = calibration_segments(word_tokenizer, corpus, nsamples=4, seqlen=16, seed=7)
    assert random.random() == before  # global RNG untouched
    tokens = tokenize_corpus(word_tokenizer, corpus, "train")[0]
    rng = random.Random(7)
    for row in segments:
        i = rng.randint(0, tokens.numel() - 16 - 1)
        assert torch.equal(row, tokens[i : i + 16])


def test_segments_too_little_text_message(word_tokenizer, tmp_path):
    path = tmp_path / "small.txt"
    path.write_text("only five words in here\n", encoding="utf-8")
    message = (
        f"source '{path}' split 'train' has 5 tokens; nsamples=2 seqlen=8 "
        "needs at least seqlen+1 = 9 tokens"
    )
    with pytest.raises(ValueError) as info:
        calibration_segments(word_tokenizer, str(path), nsamples=2, seqlen=8, seed=0)
    assert str(info.value) == message


@pytest.mark.parametrize(("nsamples", "seqlen"), [(0, 8), (2, 0), (-1, 8), (2, 1.5)])
def test_segments_reject_bad_sizes(word_tokenizer, corpus, nsamples, seqlen):
    with pytest.raises(ValueError, match="must be a positive integer"):
        calibration_segments(word_tokenizer, corpus, nsamples=nsamples, seqlen=seqlen, seed=0)


def test_web_nt_test_split_with_smollm2(smollm2_tokenizer):
    ids = tokenize_corpus(smollm2_tokenizer, "web-nt", "test")
    assert ids.shape[0] == 1 and ids.shape[1] > 2 * 40 * 512  # well over 40 windows of 512
    text = load_text("web-nt", "test")
    whole = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[0].tolist() == whole  # chunking changes nothing, no BOS added
    segments = calibration_segments(smollm2_tokenizer, "web-nt", 8, 512, seed=0, split="test")
    assert segments.shape == (8, 512)
