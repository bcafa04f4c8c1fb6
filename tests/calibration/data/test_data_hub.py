"""Hub sources through their real loading code, on small local json files; offline errors."""

from __future__ import annotations

import dataclasses
import json

import datasets
import datasets.config
import huggingface_hub.constants
import pytest

from calibration.data import SOURCES, DatasetUnavailableError, load_split, load_text
from calibration.data.hub import C4, PTB, WIKITEXT2, HubSource

OFFLINE_NAMES = ("web-ot", "web-nt", "pydocs", ".txt/.jsonl")


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def _local(spec: HubSource, tmp_path, files: dict[str, str]) -> HubSource:
    """The registered spec with its hub path swapped for local json files."""
    return dataclasses.replace(
        spec, path="json", name=None, data_files=files, cache_dir=str(tmp_path / "hf-cache")
    )


def test_registered_specs_match_gptq():
    assert (WIKITEXT2.path, WIKITEXT2.name, WIKITEXT2.joiner) == ("wikitext", "wikitext-2-raw-v1", "\n\n")
    assert (PTB.path, PTB.name, PTB.text_field, PTB.joiner) == ("ptb_text_only", "penn_treebank", "sentence", " ")
    assert C4.path == "allenai/c4" and C4.splits["test"] == "validation"
    assert C4.data_files["test"] == "en/c4-validation.00000-of-00008.json.gz"
    assert C4.data_files["train"] == "en/c4-train.00000-of-01024.json.gz"
    assert C4.max_documents["test"] == 1100 and C4.joiner == " "
    assert SOURCES["wikitext2"] is WIKITEXT2 and SOURCES["ptb"] is PTB and SOURCES["c4"] is C4


def test_ptb_sentences_joined_with_space(tmp_path, monkeypatch):
    files = {
        "train": _write_jsonl(tmp_path / "train.jsonl", [{"sentence": f"train sentence {i}"} for i in range(3)]),
        "test": _write_jsonl(tmp_path / "test.jsonl", [{"sentence": "a b"}, {"sentence": "c <unk> d"}]),
    }
    monkeypatch.setitem(SOURCES, "ptb", _local(PTB, tmp_path, files))
    assert load_split("ptb", "test").column_names == ["text"]
    assert load_text("ptb", "evaluation") == "a b c <unk> d"
    assert load_text("ptb", "train") == "train sentence 0 train sentence 1 train sentence 2"


def test_wikitext_lines_joined_with_blank_line(tmp_path, monkeypatch):
    rows = [{"text": ""}, {"text": " = Title = \n"}, {"text": " Body text .\n"}]
    files = {"train": _write_jsonl(tmp_path / "w.jsonl", rows), "test": str(tmp_path / "w.jsonl")}
    monkeypatch.setitem(SOURCES, "wikitext2", _local(WIKITEXT2, tmp_path, files))
    assert load_text("wikitext2", "test") == "\n\n = Title = \n\n\n Body text .\n"


def test_c4_validation_cut_to_first_1100_documents(tmp_path, monkeypatch):
    rows = [{"text": f"doc{i}", "url": f"u{i}", "timestamp": "t"} for i in range(1105)]
    files = {"train": _write_jsonl(tmp_path / "train.json", rows[:4]),
             "test": _write_jsonl(tmp_path / "validation.json", rows)}
    monkeypatch.setitem(SOURCES, "c4", _local(C4, tmp_path, files))
    test = load_split("c4", "validation")
    assert test.column_names == ["text"] and len(test) == 1100
    assert load_text("c4", "test") == " ".join(f"doc{i}" for i in range(1100))
    assert load_text("c4", "calibration") == "doc0 doc1 doc2 doc3"


def test_missing_text_field_is_a_clear_error(tmp_path, monkeypatch):
    files = {"train": _write_jsonl(tmp_path / "t.jsonl", [{"text": "no sentence field"}]), "test": ""}
    monkeypatch.setitem(SOURCES, "ptb", _local(PTB, tmp_path, files))
    with pytest.raises(ValueError, match="no field 'sentence'"):
        load_split("ptb", "train")


def _assert_offline_message(message: str) -> None:
    assert "hub could not be reached" in message
    for name in OFFLINE_NAMES:
        assert name in message


def test_offline_hub_raises_dataset_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    missing = dataclasses.replace(
        WIKITEXT2, path="ptq-tests/no-such-dataset", cache_dir=str(tmp_path / "hf-cache")
    )
    monkeypatch.setitem(SOURCES, "wikitext2", missing)
    with pytest.raises(DatasetUnavailableError) as info:
        load_split("wikitext2", "test")
    assert isinstance(info.value, ValueError)
    _assert_offline_message(str(info.value))
    assert "'wikitext2'" in str(info.value)


def _offline_errors() -> list[BaseException]:
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import OfflineModeIsEnabled

    return [
        ConnectionError("Couldn't reach 'wikitext' on the Hub (LocalEntryNotFoundError)"),
        OfflineModeIsEnabled("offline mode is enabled"),
        DatasetNotFoundError("Dataset 'allenai/c4' doesn't exist on the Hub"),
        TimeoutError("timed out"),
    ]


@pytest.mark.parametrize("error", _offline_errors(), ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("source", ["wikitext2", "ptb", "c4"])
def test_errors_from_datasets_become_dataset_unavailable(monkeypatch, source, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DatasetUnavailableError) as info:
        load_text(source, "train")
    _assert_offline_message(str(info.value))
    assert info.value.__cause__ is error


def test_loading_script_datasets_get_a_clear_error(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("Dataset scripts are no longer supported, but found ptb_text_only.py")

    monkeypatch.setattr(datasets, "load_dataset", fail)
    with pytest.raises(DatasetUnavailableError, match="loading-script dataset.*web-ot, web-nt, pydocs"):
        load_split("ptb", "test")
