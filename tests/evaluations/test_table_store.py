"""The JSON Lines results store: durable appends, done keys, interrupted last line."""
from __future__ import annotations

from evaluations.results_store import ResultsStore, cell_key


def test_cell_key_is_stable_and_order_free():
    assert cell_key({"a": 1, "b": [1, 2]}) == cell_key({"b": [1, 2], "a": 1})
    assert cell_key({"a": 1}) != cell_key({"a": 2})


def test_append_and_done_keys(tmp_path):
    store = ResultsStore(tmp_path / "sub" / "r.jsonl")
    assert store.done_keys() == set()
    store.append({"key": "k1", "ppl": 1.5})
    store.append({"key": "k2", "ppl": 2.5})
    assert store.done_keys() == {"k1", "k2"}
    assert store.by_key()["k2"]["ppl"] == 2.5


def test_truncated_last_line_is_ignored_then_cut(tmp_path):
    path = tmp_path / "r.jsonl"
    store = ResultsStore(path)
    store.append({"key": "k1", "ppl": 1.0})
    with path.open("a") as f:
        f.write('{"key": "k2", "pp')  # killed mid-write
    assert store.done_keys() == {"k1"}
    store.append({"key": "k3", "ppl": 3.0})
    assert store.done_keys() == {"k1", "k3"}
    assert path.read_text().count("\n") == 2
