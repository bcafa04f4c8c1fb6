"""SmolLM2-135M quantized by streaming (one block read from disk at a time, each written as a shard)
equals the in-memory result bit for bit (issue 18's streaming criterion, on the real model).

Lean: RTN W4 g64 (no calibration passes); the calibrated paths (catching inputs, GPTQ, AWQ, SmoothQuant
+ W8A8) are compared bit for bit on a tiny sharded model in tests/calibration/runner/test_streaming.py."""
from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow


def test_smollm2_streamed_equals_in_memory(tmp_path):
    from calibration.models import load_model
    from calibration.models.loading import resolve_source
    from calibration.models.streaming import StreamedModel
    from calibration.recipes import Recipe
    from calibration.runner import quantize_model
    from calibration.runner.streaming import StreamingQuantizer
    from ptq.checkpoint.files import read_tensors
    from ptq.checkpoint.save import save_quantized

    recipe, segments = "rtn w4 g64", None
    model, _ = load_model("smollm2-135m")
    result = quantize_model(model, Recipe.parse(recipe), segments, progress=False)
    save_quantized(model, tmp_path / "memory", result.records)
    del model

    streamed = StreamedModel.from_folder(resolve_source("smollm2-135m"))
    streamed.load_resident(head=False)
    (tmp_path / "streamed").mkdir()
    loader = StreamingQuantizer(streamed, tmp_path / "streamed")
    quantize_model(streamed.model, Recipe.parse(recipe), segments, progress=False, loader=loader)
    loader.finish()

    a, b = read_tensors(tmp_path / "memory"), read_tensors(tmp_path / "streamed")
    assert set(a) == set(b) and len(a) > 30 * 7
    different = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not different, different[:5]
    config = lambda p: json.loads((p / "config.json").read_text())  # noqa: E731
    assert config(tmp_path / "memory") == config(tmp_path / "streamed")
