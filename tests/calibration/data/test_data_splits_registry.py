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
    assert available_sources() == ["c4", "coreutils", "ptb", "pydocs", "web-nt", "web-ot", "wikitext2"]


def test_unknown_source_message():
    expected = (
        "unknown dataset 'nope'; known: c4, coreutils, ptb, pydocs, web-nt, web-ot, wikitext2, "
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


@pytest.mark.parametrize("as_dataset", [False, True])
def test_a_loader_returns_documents_or_a_dataset(as_dataset: bool, monkeypatch):
    monkeypatch.setattr(data.registry, "SOURCES", dict(SOURCES))
    monkeypatch.setattr(data.corpus, "SOURCES", data.registry.SOURCES)

    @register_source("docs")
    def docs(split: str):
        documents = [f"{split} one", f"{split} two"]
        return documents_dataset(documents) if as_dataset else documents

    source = data.registry.SOURCES["docs"]
    assert data.registry.source_documents(source, "test") == ["test one", "test two"]
    split = load_split("docs", "train")
    assert split.column_names == ["text"] and split["text"] == ["train one", "train two"]
    assert load_text("docs", "test") == "test one\n\ntest two"


def test_offline_corpora_never_import_datasets():
    """datasets + pyarrow + pandas cost ~95 MB of resident memory: the offline token path skips them."""
    import subprocess
    import sys

    code = ("import sys\n"
            "import calibration.data as D, calibration.runner, evaluations.perplexity, scripts.cli\n"
            "class Tok:\n"
            "    def __call__(self, texts, **kw):\n"
            "        return {'input_ids': [[len(w) for w in t.split()] for t in texts]}\n"
            "for source in ('web-ot', 'web-nt'):\n"
            "    assert D.tokenize_corpus(Tok(), source, 'train').shape[1] > 1000\n"
            "assert D.load_text('web-nt', 'test')\n"
            "print(sorted(m for m in ('datasets', 'pyarrow', 'pandas') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
