"""Fault injection, part 2: damaged checkpoints, NaN / inf in weights and activations, a full
disk, and the bad inputs caught before loading (long sequences, ignored options, short corpora)
— each one line on stderr and exit code 2, never a traceback, never a half-written output."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from scripts.cli import main


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_exit_2(code: int, err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if "warning" not in line]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert all(n in lines[0] for n in needles), err


def nothing_written(folder: Path, name: str = "out") -> None:
    assert not (folder / name).exists()
    assert not list(folder.glob(f".{name}.tmp-*")) and not list(folder.glob(f".{name}.old-*"))


@pytest.fixture(scope="module")
def checkpoint(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "q"
    assert main(["quantize", str(tiny_model_dir), "--method", "rtn", "--bits", "4", "--output", str(out), "--quiet"]) == 0
    return out


def test_checkpoint_files_follow_the_umask(tiny_model_dir, tmp_path):
    old = os.umask(0o027)
    try:
        assert main(["quantize", str(tiny_model_dir), "--method", "rtn", "--output", str(tmp_path / "q"), "--quiet"]) == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "q").iterdir()}
    assert modes["model.safetensors"] == 0o640 and set(modes.values()) == {0o640}, modes
    assert (tmp_path / "q").stat().st_mode & 0o777 == 0o750


CHECKPOINT_FILES = ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"]


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_damaged_checkpoint_is_a_clear_error(name, damage, checkpoint, corpus, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(checkpoint, bad)
    data = (bad / name).read_bytes()
    (bad / name).write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\xff" * 64 + data[64:])
    code, _, err = run(["eval", bad, "--dataset", corpus, "--seqlen", 32, "--max-windows", 1, "--quiet"], capsys)
    one_line_exit_2(code, err)


def nan_model(src: Path, dst: Path, key: str, value: float, whole_column: bool = False) -> Path:
    """A copy of the model folder ``src`` with ``value`` written into tensor ``key`` (element [0, 0],
    or its whole column 0: every token's embedding then carries it into the calibration activations)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    tensors = load_file(str(dst / "model.safetensors"))
    tensors[key] = tensors[key].clone()
    if whole_column:
        tensors[key][:, 0] = value
    else:
        tensors[key][0, 0] = value
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_weight_is_refused(value, tiny_model_dir, tmp_path, capsys):
    bad = nan_model(tiny_model_dir, tmp_path / "m", "model.layers.1.mlp.down_proj.weight", value)
    code, _, err = run(["quantize", bad, "--method", "rtn", "--output", tmp_path / "out", "--quiet"], capsys)
    one_line_exit_2(code, err, "model.layers.1.mlp.down_proj.weight contains NaN or inf")
    nothing_written(tmp_path)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_calibration_activation_is_refused(value, tiny_model_dir, corpus, tmp_path, capsys):
    from safetensors import safe_open

    with safe_open(str(tiny_model_dir / "model.safetensors"), "pt") as f:
        embed = next(k for k in f.keys() if "embed_tokens" in k)
    bad = nan_model(tiny_model_dir, tmp_path / "m", embed, value, whole_column=True)
    code, _, err = run(["quantize", bad, "--method", "gptq", "--calib", corpus, "--nsamples", 4, "--seqlen", 32,
                        "--output", tmp_path / "out", "--quiet"], capsys)
    one_line_exit_2(code, err, "contains NaN or inf during calibration")
    nothing_written(tmp_path)


def test_full_disk_while_keeping_a_block_is_a_clear_error(tiny_model_dir, corpus, tmp_path, capsys, monkeypatch):
    import calibration.runner.workdir as workdir

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "inputs-00001.safetensors")

    monkeypatch.setattr(workdir, "stream_safetensors", full)
    code, _, err = run(["quantize", tiny_model_dir, "--method", "gptq", "--calib", corpus, "--nsamples", 4,
                        "--seqlen", 32, "--output", tmp_path / "out", "--quiet"], capsys)
    one_line_exit_2(code, err, "no space left on device")
    nothing_written(tmp_path)


def test_long_sequence_is_refused_before_loading(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import calibration.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    code, _, err = run(["quantize", tiny_model_dir, "--method", "gptq", "--seqlen", 100000, "--nsamples", 1,
                        "--output", tmp_path / "out", "--quiet"], capsys)
    one_line_exit_2(code, err, "--seqlen 100000 is longer than the 256 positions", "max_position_embeddings")
    code, _, err = run(["eval", tiny_model_dir, "--seqlen", 4096, "--quiet"], capsys)
    one_line_exit_2(code, err, "--seqlen 4096 is longer than the 256 positions")
    nothing_written(tmp_path)


def test_ignored_options_are_named(tiny_model_dir, tmp_path, capsys):
    code, _, err = run(["quantize", tiny_model_dir, "--method", "rtn", "--calib", "pydocs", "--nsamples", 4,
                        "--seqlen", 100000, "--output", tmp_path / "out", "--quiet"], capsys)
    assert code == 0, err
    assert "warning: --method rtn uses no calibration data, so --calib, --nsamples, --seqlen are ignored" in err


def test_short_corpus_is_refused_before_loading(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import calibration.models as models

    short = tmp_path / "short.txt"
    short.write_text("only a few words here")
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    code, _, err = run(["quantize", tiny_model_dir, "--method", "gptq", "--calib", short, "--seqlen", 64,
                        "--output", tmp_path / "out", "--quiet"], capsys)
    one_line_exit_2(code, err, f"calibration corpus {short} has", "too few for one window of --seqlen 64")
    nothing_written(tmp_path)


def test_machine_too_small_is_refused_unless_forced(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import calibration.plan.check as check

    monkeypatch.setattr(check, "available_memory", lambda: 1 << 20)  # 1 MiB left
    code, _, err = run(["quantize", tiny_model_dir, "--method", "rtn", "--output", tmp_path / "out", "--quiet"], capsys)
    one_line_exit_2(code, err, "MiB of host memory at its peak", "--force")
    nothing_written(tmp_path)
    code, _, err = run(["quantize", tiny_model_dir, "--method", "rtn", "--output", tmp_path / "out", "--quiet",
                        "--force"], capsys)
    assert code == 0 and "(--force: going ahead)" in err
