"""Split names, the every-5th document split, and the source registry."""

from __future__ import annotations

import pytest

import calibration.data as data
from calibration.data import (
    SOURCES,
    available_sources,
    canonical_split,
    load_split,
    load_text,
    register_source,
    split_documents,
)
from calibration.data.documents import documents_dataset


@pytest.mark.parametrize(
    ("name", "expected"),
    [("train", "train"), ("calibration", "train"), ("test", "test"),
     ("evaluation", "test"), ("validation", "test"), (" Test ", "test")],
)
def test_split_aliases(name, expected):
    assert canonical_split(name) == expected


def test_unknown_split_message():
    with pytest.raises(ValueError, match=r"unknown split 'dev'.*'train'.*'calibration'.*'test'"):
        load_split("web-nt", "dev")


def test_every_fifth_document_is_test():
    docs = [f"d{i}" for i in range(12)]
    assert split_documents(docs, "test") == ["d4", "d9"]
    assert split_documents(docs, "train") == [d for d in docs if d not in ("d4", "d9")]


def test_too_few_documents_gives_everything_to_both_splits():
    docs = ["a", "b", "c"]
    assert split_documents(docs, "train") == docs == split_documents(docs, "test")


def test_known_sources_listed():
    assert available_sources() == ["c4", "ptb", "pydocs", "web-nt", "web-ot", "wikitext2"]


def test_unknown_source_message():
    expected = (
        "unknown dataset 'nope'; known: c4, ptb, pydocs, web-nt, web-ot, wikitext2, "
        "or a path to a .txt/.jsonl file or folder"
    )
    with pytest.raises(ValueError) as info:
        load_split("nope", "train")
    assert str(info.value) == expected


def test_register_source_decorator(monkeypatch):
    monkeypatch.setattr(data.registry, "SOURCES", dict(SOURCES))
    monkeypatch.setattr(data.corpus, "SOURCES", data.registry.SOURCES)

    @register_source("tiny", joiner=" | ")
    def tiny(split: str):
        return documents_dataset([f"{split}-1", f"{split}-2"])

    assert "tiny" in data.registry.available_sources()
    assert load_split("tiny", "calibration")["text"] == ["train-1", "train-2"]
    assert load_text("tiny", "evaluation") == "test-1 | test-2"
    with pytest.raises(ValueError, match="already registered"):
        register_source("tiny")(tiny)
