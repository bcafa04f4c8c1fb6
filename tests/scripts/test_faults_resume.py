"""Fault injection, part 1: a ``ptq quantize`` killed at a block (SIGKILL in a subprocess) or
stopped by SIGTERM resumes from its work folder to the same checkpoint, byte for byte; a damaged
work folder is recomputed cleanly; two runs cannot write one output at once."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from scripts.cli import main
from scripts.output import output_lock, work_folder_path

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = 4


@pytest.fixture(scope="module")
def model4(tmp_path_factory, smol_tokenizer):
    """A tiny random Llama of four blocks with SmolLM2's tokenizer (a local HF folder)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=BLOCKS,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    path = tmp_path_factory.mktemp("faults") / "tiny4"
    LlamaForCausalLM(cfg).save_pretrained(path)
    smol_tokenizer.save_pretrained(path)
    return path


def argv(model4, corpus, out, method=("--method", "gptq", "--bits", "4")):
    return ["quantize", str(model4), *method, "--calib", str(corpus), "--nsamples", "8", "--seqlen", "32",
            "--batch-size", "4", "--output", str(out), "--quiet"]


@pytest.fixture(scope="module")
def reference(model4, corpus, tmp_path_factory):
    """The uninterrupted run's checkpoint (GPTQ W4; SmoothQuant auto + W8A8), keyed by method."""
    refs = {}
    for name, method in METHODS.items():
        out = tmp_path_factory.mktemp("ref") / name
        assert main(argv(model4, corpus, out, method)) == 0
        refs[name] = out
    return refs


METHODS = {"gptq": ("--method", "gptq", "--bits", "4"),
           "smoothquant": ("--method", "smoothquant", "--alpha", "auto")}


def killed_run(model4, corpus, out, block: int, sig: str = "SIGKILL", method=METHODS["gptq"]):
    env = {**os.environ, "PTQ_FAULT_AFTER_BLOCK": f"{block}:{sig}", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "scripts.cli", *argv(model4, corpus, out, method)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def same_bytes(a: Path, b: Path) -> bool:
    return (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()


def test_sigkill_at_a_random_block_then_resume_is_bit_exact(model4, corpus, reference, tmp_path, capsys):
    block = random.Random(os.getpid()).randint(1, BLOCKS - 1)
    out = tmp_path / "out"
    proc = killed_run(model4, corpus, out, block)
    assert proc.returncode == -9, proc.stderr
    work = work_folder_path(out)
    assert not out.exists() and json.loads((work / "progress.json").read_text())["next_block"] == block
    assert main(argv(model4, corpus, out)) == 0
    assert "resumed_at_block" in json.loads((out / "ptq.json").read_text())
    assert same_bytes(out, reference["gptq"]) and not work.exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_sigterm_stops_after_a_block_and_says_how_to_resume(model4, corpus, reference, tmp_path):
    out = tmp_path / "out"
    proc = killed_run(model4, corpus, out, 2, "SIGTERM", METHODS["smoothquant"])
    assert proc.returncode == 143, proc.stderr
    assert "stopped by SIGTERM after block 2/4" in proc.stderr and "run the same command again to resume" in proc.stderr
    assert not out.exists()
    assert main(argv(model4, corpus, out, METHODS["smoothquant"])) == 0
    assert same_bytes(out, reference["smoothquant"])  # SmoothQuant's alphas per block survive the stop
    ref_steps = json.loads((reference["smoothquant"] / "ptq.json").read_text())["steps"]
    steps = json.loads((out / "ptq.json").read_text())["steps"]
    assert steps[0]["alphas"] == ref_steps[0]["alphas"] and len(steps[0]["alphas"]) == BLOCKS


@pytest.fixture(scope="module")
def partial(model4, corpus, tmp_path_factory):
    """A work folder left by a run killed after block 2 (copied by each test that damages it)."""
    out = tmp_path_factory.mktemp("partial") / "out"
    assert killed_run(model4, corpus, out, 2).returncode == -9
    return work_folder_path(out)


# every kind of file of the folder once (the hashes in progress.json catch any damage alike)
DAMAGE = [("progress.json", "truncate"), ("block-00000.json", "flip"), ("block-00001.safetensors", "flip"),
          ("inputs-00002.safetensors", "truncate")]


@pytest.mark.parametrize("name, damage", DAMAGE)
def test_damaged_work_folder_is_recomputed_cleanly(name, damage, partial, model4, corpus, reference, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    work = work_folder_path(out)
    shutil.copytree(partial, work)
    data = bytearray((work / name).read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    (work / name).write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="starting over from block 0"):
        assert main(argv(model4, corpus, out)) == 0
    assert "resumed_at_block" not in json.loads((out / "ptq.json").read_text())
    assert same_bytes(out, reference["gptq"]) and not work.exists()


def test_no_resume_starts_over_and_another_recipe_does_not_resume(partial, model4, corpus, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(partial, work_folder_path(out))
    assert main(argv(model4, corpus, out, ("--method", "gptq", "--bits", "3"))) == 0  # another recipe: key differs
    assert "resumed_at_block" not in json.loads((out / "ptq.json").read_text())


def test_two_runs_on_one_output(model4, corpus, tmp_path, capsys):
    out = tmp_path / "out"
    with output_lock(out):  # what a first run holds while it works (flock: released even by SIGKILL)
        code = main(argv(model4, corpus, out))
    err = capsys.readouterr().err
    assert code == 2 and f"another ptq run (pid {os.getpid()}) is writing {out}" in err
    assert not out.exists() and not work_folder_path(out).exists()
