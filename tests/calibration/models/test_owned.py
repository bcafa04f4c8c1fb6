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


def _mapped_ranges(folder: Path) -> list[tuple[int, int]]:
    out = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith(str(folder.resolve())):
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            out.append((lo, hi))
    return out


@linux
def test_load_model_owns_every_weight_but_the_embedding(tiny_model_dir) -> None:
    """A weight a quantized module replaces must be freed: only the embedding may stay a view of the checkpoint."""
    model, _ = load_model(str(tiny_model_dir))
    gc.collect()
    ranges = _mapped_ranges(tiny_model_dir)
    in_file = lambda t: any(lo <= t.data_ptr() < hi for lo, hi in ranges)  # noqa: E731
    embedding = model.get_input_embeddings().weight
    assert not any(in_file(p) for p in model.parameters() if p is not embedding)
    assert in_file(embedding) or not ranges  # left mapped (when transformers mapped the file at all)
    assert model.lm_head.weight is embedding or not model.config.tie_word_embeddings
