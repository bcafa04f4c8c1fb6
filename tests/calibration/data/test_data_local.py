"""Local sources: a .txt file, a .jsonl file, a folder; too-small files."""

from __future__ import annotations

import json

import pytest

from calibration.data import load_split, load_text


def _paragraphs(n: int) -> list[str]:
    return [f"Paragraph {i} line one.\nline two of {i}." for i in range(n)]


def test_txt_paragraphs_split_every_fifth(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("\n\n\n".join(_paragraphs(10)) + "\n", encoding="utf-8")
    train = load_split(str(path), "train")["text"]
    test = load_split(path, "test")["text"]
    assert test == [_paragraphs(10)[4], _paragraphs(10)[9]]
    assert len(train) == 8 and not set(train) & set(test)
    assert load_text(str(path), "test") == "\n\n".join(test)


def test_single_paragraph_file_gives_whole_text_to_both_splits(tmp_path):
    path = tmp_path / "one.txt"
    path.write_text("Just one paragraph\nover two lines.\n", encoding="utf-8")
    expected = "Just one paragraph\nover two lines."
    assert load_text(str(path), "train") == expected == load_text(str(path), "test")


def test_jsonl_lines_are_documents(tmp_path):
    path = tmp_path / "docs.jsonl"
    rows = [{"text": f"document {i}", "id": i} for i in range(7)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert load_split(str(path), "test")["text"] == ["document 4"]
    assert load_split(str(path), "train")["text"] == [f"document {i}" for i in (0, 1, 2, 3, 5, 6)]


def test_jsonl_without_text_field_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: .*'text'"):
        load_split(str(path), "train")


def test_folder_files_sorted_recursively(tmp_path):
    names = ["a.txt", "b.md", "sub/c.rst", "sub/d.rst.txt", "sub/deeper/e.txt", "f.txt"]
    for name in names:
        file = tmp_path / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(f"Text of :func:`{file.stem}`.\n", encoding="utf-8")
    (tmp_path / "ignored.csv").write_text("x,y\n", encoding="utf-8")
    train = load_split(str(tmp_path), "train")["text"]
    test = load_split(str(tmp_path), "test")["text"]
    # sorted: a.txt b.md f.txt sub/c.rst sub/d.rst.txt sub/deeper/e.txt; reST reduced
    assert test == ["Text of d.rst."]
    assert train == ["Text of :func:`a`.", "Text of :func:`b`.", "Text of :func:`f`.",
                     "Text of c.", "Text of :func:`e`."]


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="expected a .txt or .jsonl file or a folder"):
        load_split(str(path), "train")
