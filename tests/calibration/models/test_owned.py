"""own_memory: loaded weights leave the checkpoint's memory map, without two copies at once."""
from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch
from torch import nn

from calibration.models import load_model
from calibration.models.owned import file_mappings, own_memory, release_file_pages

linux = pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc/self/smaps")


def _resident_kb(address: int) -> int:
    """Rss of the mapping that holds ``address``, from /proc/self/smaps."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and line.startswith("Rss:"):
            return int(line.split()[1])
    raise AssertionError("address not mapped")


@linux
def test_own_memory_copies_a_mapped_model_and_gives_its_pages_back(tmp_path) -> None:
    path = tmp_path / "weights.bin"
    values = torch.randn(4 << 20 >> 2)  # 4 MiB of float32, a stand-in for a safetensors file
    values.numpy().tofile(path)
    base = torch.from_file(str(path), shared=False, size=values.numel(), dtype=torch.float32)  # mmapped
    model = nn.Sequential(nn.Linear(1024, 512, bias=False), nn.Linear(1024, 512, bias=False))
    with torch.no_grad():
        model[0].weight.data = base[: 512 * 1024].view(512, 1024)
        model[1].weight.data = base[512 * 1024:].view(512, 1024)
    float(model[0].weight.detach().sum() + model[1].weight.detach().sum())  # a calibration pass reads every page
    address = base.data_ptr()
    assert any(lo <= address < hi for lo, hi in file_mappings())
    assert _resident_kb(address) >= 4000
    own_memory(model)
    assert _resident_kb(address) < 100  # the mapping is still open (``base``), its pages are not resident
    assert torch.equal(torch.cat([model[0].weight.flatten(), model[1].weight.flatten()]), values)
    assert torch.equal(base, values)  # clean file pages read back unchanged when touched again
    assert all(p.untyped_storage().data_ptr() != base.untyped_storage().data_ptr() for p in model.parameters())


def test_own_memory_keeps_ties_and_never_touches_anonymous_memory() -> None:
    base = torch.randn(10, 8)  # ordinary heap memory: copied, never given back
    model = nn.Sequential(nn.Linear(8, 4), nn.Linear(8, 4))
    with torch.no_grad():
        model[0].weight.data = base[:4]
        model[1].weight = model[0].weight  # tied
    own_memory(model)
    assert model[1].weight is model[0].weight and torch.equal(model[0].weight, base[:4])
    assert model[0].weight.untyped_storage().data_ptr() != base.untyped_storage().data_ptr()
    assert not release_file_pages(base, file_mappings())
    assert torch.isfinite(base).all()


@linux
def test_load_model_leaves_nothing_mapped(tiny_model_dir) -> None:
    """A weight a quantized module replaces must be freed: no tensor may stay a view of the checkpoint."""
    mapped = lambda: str(tiny_model_dir.resolve()) in Path("/proc/self/maps").read_text()  # noqa: E731
    model, _ = load_model(str(tiny_model_dir))
    gc.collect()
    assert not mapped()
    assert model.lm_head.weight is model.model.embed_tokens.weight or not model.config.tie_word_embeddings
