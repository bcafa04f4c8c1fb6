"""One call for research code: :func:`oneshot` quantizes a model with a recipe and packs it.

    from calibration import oneshot
    q = oneshot("smollm2-135m", "gptq w4 g64 act-order", dataset="web-ot", nsamples=128)
    q.save("out/w4g64")

It lives in :mod:`calibration` (not :mod:`ptq`): it runs corpora, model loading and the block-by-block
runner, which sit above the ``ptq`` layer (``ptq`` never imports ``calibration``); and ``ptq.quantize``
is the tensor primitive. The steps are the same as ``ptq quantize``'s (the CLI builds a recipe from its
flags and runs :func:`calibration.runner.quantize_model`, as this does).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from calibration.recipes.recipe import Recipe, as_recipe
from calibration.runner.context import LayerRecord
from calibration.runner.runner import QuantizationResult, quantize_model
from ptq.checkpoint.formats import export, parse_format
from ptq.errors import PTQUserError
from ptq.modules.swap import is_qmodule, quantize_modules

#: ``QuantizedModel.save(format=...)``: the checkpoint writers by name.
@dataclass
class QuantizedModel:
    """A quantized model (its layers packed in place), the recipe that made it and what each layer got."""

    model: nn.Module
    tokenizer: Any
    recipe: Recipe
    result: QuantizationResult

    @property
    def records(self) -> dict[str, LayerRecord]:
        """Qualified layer name -> :class:`LayerRecord` (method, spec, qparams, error, notes)."""
        return self.result.records

    def report(self) -> dict[str, Any]:
        """What ``ptq.json`` holds: the recipe, each step's summary, each layer's record, timings."""
        return {"recipe": self.recipe.to_list(), **self.result.to_json()}

    def save(self, directory: str | Path, format: str = "ptq", overwrite: bool = False, **kwargs: Any) -> Path:
        """Write a checkpoint in any format ``ptq export`` writes (:mod:`ptq.checkpoint.formats`): ``"ptq"``
        (every method, lossless), ``"gptq"``, ``"compressed-tensors"`` or ``"gguf:Q4_0"`` / ``"gguf:Q4_1"`` /
        ``"gguf:Q8_0"`` (weight-only grids the format holds exactly; anything else is refused)."""
        parse_format(format)  # an unknown format fails before anything is written
        return export(self.model, directory, format, self.records, tokenizer=self.tokenizer, extra=self.report(),
                      overwrite=overwrite, **kwargs)

    def summary(self) -> str:
        """One line: the recipe, how many layers each quantized module kind holds, the quantize time."""
        kinds = Counter(type(m).__name__ for n, m in self.model.named_modules() if n and is_qmodule(m))
        layers = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no packed layers"
        return f"{self.recipe.describe()}: {layers}; {self.result.timings.get('quantize', 0.0):.1f} s"

    def __repr__(self) -> str:
        return f"QuantizedModel({self.summary()})"


def oneshot(
    model: nn.Module | str,
    recipe: Any,
    dataset: str | Path | torch.Tensor | None = None,
    tokenizer: Any = None,
    *,
    nsamples: int = 128,
    seqlen: int = 512,
    seed: int = 0,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    autocast: str | None = None,
    pack: bool = True,
    progress: bool = False,
) -> QuantizedModel:
    """Quantize ``model`` with ``recipe`` in place and return it packed, with its records.

    Args:
        model: a ``transformers`` causal LM, or a name for :func:`calibration.models.load_model`
            (``"smollm2-135m"``, a local folder, a ``.gguf`` file, a hub id), loaded in float32 on the CPU.
        recipe: anything :func:`calibration.recipes.recipe.as_recipe` reads: a description
            (``"gptq w4 g64 act-order"``), a dict or list of dicts, a TOML / YAML file, step objects.
        dataset: calibration data: a corpus name or path (``"web-ot"``, a ``.txt`` file, ...;
            ``nsamples`` windows of ``seqlen`` tokens drawn with ``seed``) or token ids
            ``[nsamples, seqlen]``; ``None`` only for recipes that need no data (min-max RTN).
        tokenizer: needed with a corpus ``dataset`` and a model object; saved with the checkpoint.
        batch_size, device, autocast: as in :func:`calibration.runner.quantize_model`.
        pack: swap fake-quantized weight-only layers for packed ``QuantLinear`` modules (int8 layers are
            swapped by their steps already).
    """
    recipe = as_recipe(recipe)
    if isinstance(model, (str, Path)):
        from calibration.models import load_model

        model, loaded_tokenizer = load_model(model)
        tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
    segments = None
    if recipe.needs_calibration_data:
        if dataset is None:
            raise PTQUserError(f"recipe {recipe.describe()} needs calibration data: pass dataset= (a corpus name "
                               "such as 'web-ot', a text file, or token ids [nsamples, seqlen])")
        if isinstance(dataset, torch.Tensor):
            segments = dataset
        else:
            if tokenizer is None:
                raise PTQUserError("a corpus dataset needs the model's tokenizer: pass tokenizer=")
            from calibration.data import calibration_segments

            segments = calibration_segments(tokenizer, dataset, nsamples, seqlen, seed)
    result = quantize_model(model, recipe, segments, batch_size=batch_size, device=device, progress=progress,
                            autocast=autocast)
    if pack:
        quantize_modules(model, result.records)
    return QuantizedModel(model=model, tokenizer=tokenizer, recipe=recipe, result=result)
