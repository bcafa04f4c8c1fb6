"""Grid configs: models x methods x evaluation datasets, in TOML or YAML.

::

    name = "offline"
    baseline = "fp32"                     # optional: delta columns are relative to it
    published = "my-published.json"      # optional, relative to the config file

    [[models]]
    label = "SmolLM2-135M"
    id = "smollm2-135m"                  # HF id, local folder, .gguf or alias

    [[methods]]
    label = "RTN W4 g64"
    family = "RTN"                       # optional: one plot line per family
    dtype = "float32"                    # optional: weights dtype before quantizing
    steps = [{step = "rtn", bits = 4, granularity = "group", group_size = 64}]

    datasets = ["web-nt", {label = "c4", source = "c4", max_windows = 256}]

    [calibration]                        # source (or a mixture web-ot:0.5,pydocs:0.5), nsamples, seqlen,
                                         # seed | seeds, batch_size, bos (auto | on | off)
    [eval]                               # seqlen, max_windows, native_dtype, window_seed, bos, kl_topk

Every mistake (unknown key, unknown step or argument, duplicate label, wrong type) is
one :class:`ValueError` naming where it is.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.grid.validate import _int, _list, _no_unknown, _str, _table
from calibration.config_files import read_structured_file
from calibration.data.segments import BOS_CHOICES
from ptq.errors import PTQUserError

PRESETS_DIR = Path(__file__).parent / "presets"
DTYPES = ("float32", "bfloat16", "float16")
TOP_KEYS = {"name", "description", "baseline", "published", "device", "models", "methods", "datasets",
            "calibration", "eval"}


@dataclass(frozen=True)
class ModelEntry:
    label: str
    id: str


@dataclass(frozen=True)
class MethodEntry:
    """A table row: ``steps`` is the recipe (empty: the model as loaded in ``dtype``)."""

    label: str
    steps: tuple[dict[str, Any], ...] = ()
    dtype: str = "float32"
    family: str = ""
    autocast: str | None = None  # calibration forward passes under torch.autocast (quantize_model)

    @property
    def line(self) -> str:
        """The plot line this row belongs to (``family``, else the label's first word)."""
        return self.family or self.label.split()[0]

    def resolved_steps(self) -> list[dict[str, Any]]:
        """The recipe with every argument spelled out (defaults included)."""
        from calibration.recipes import Recipe

        return Recipe.from_list([dict(s) for s in self.steps]).to_list() if self.steps else []

    def needs_calibration(self) -> bool:
        from calibration.recipes import Recipe

        return bool(self.steps) and Recipe.from_list([dict(s) for s in self.steps]).needs_calibration_data


@dataclass(frozen=True)
class DatasetEntry:
    label: str
    source: str
    max_windows: int | None = None  # overrides eval.max_windows for this dataset


@dataclass(frozen=True)
class Calibration:
    source: str = "web-ot"
    nsamples: int = 128
    seqlen: int = 512
    seeds: tuple[int, ...] = (0,)
    batch_size: int = 8
    bos: str = "auto"  # BOS first in every segment: auto (when the tokenizer adds one), on, off

    def settings(self) -> dict[str, Any]:
        """What changes the calibration segments (part of a cell's key; not the seed, not the batch size).

        ``bos`` only when not ``auto``, so cells computed before it existed keep their keys."""
        extra = {"bos": self.bos} if self.bos != "auto" else {}
        return {"source": self.source, "nsamples": self.nsamples, "seqlen": self.seqlen, **extra}


@dataclass(frozen=True)
class Evaluation:
    seqlen: int = 512
    max_windows: int | None = None
    native_dtype: bool = False
    window_seed: int | None = None  # a seeded sample of windows (evaluations.windows) instead of the first ones
    bos: bool | None = None  # None ("auto"): a BOS in front of every window iff the model's tokenizer adds one
    kl_topk: int | None = None  # KL / top-1 vs the float model from its cached top-k logits (None:
    #                             evaluations.reference.DEFAULT_TOPK); 0: off

    def key_parts(self) -> dict:
        """The settings beyond the original ones that change a cell's numbers, only when not the default
        (cells computed before they existed keep their keys)."""
        out: dict = {}
        if self.window_seed is not None:
            out["window_seed"] = self.window_seed
        if self.bos is not None:
            out["bos"] = self.bos
        return out


@dataclass(frozen=True)
class GridConfig:
    name: str
    models: tuple[ModelEntry, ...]
    methods: tuple[MethodEntry, ...]
    datasets: tuple[DatasetEntry, ...]
    calibration: Calibration = field(default_factory=Calibration)
    eval: Evaluation = field(default_factory=Evaluation)
    baseline: str | None = None
    published: dict[str, Any] | None = None
    description: str = ""
    device: str = "cpu"

    def in_domain(self, dataset: DatasetEntry) -> bool:
        """Whether an evaluation dataset is of a domain in the calibration source or mixture
        (:func:`calibration.data.mixture.calibration_domains`: ``web-nt`` is in domain for ``web-ot``)."""
        from calibration.data.mixture import calibration_domains
        from calibration.data.registry import source_domain

        return source_domain(dataset.source) in calibration_domains(self.calibration.source)

    def with_overrides(self, models: dict[str, str] | None = None, datasets: dict[str, str] | None = None,
                       calib: str | None = None) -> "GridConfig":
        """Swap model ids / dataset sources by label (labels, and so published numbers, stay)."""
        models, datasets = models or {}, datasets or {}
        if calib:
            _check_source(calib)
        _check_labels("model", models, [m.label for m in self.models])
        _check_labels("dataset", datasets, [d.label for d in self.datasets])
        return dataclasses.replace(
            self,
            models=tuple(dataclasses.replace(m, id=models.get(m.label, m.id)) for m in self.models),
            datasets=tuple(dataclasses.replace(d, source=datasets.get(d.label, d.source)) for d in self.datasets),
            calibration=dataclasses.replace(self.calibration, source=calib or self.calibration.source),
        )


def _check_labels(kind: str, given: dict[str, str], labels: list[str]) -> None:
    unknown = sorted(set(given) - set(labels))
    if unknown:
        raise PTQUserError(f"no {kind} labelled {unknown[0]!r} in the config; {kind}s: {', '.join(labels)}")


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def resolve_config_path(name: str | Path) -> Path:
    """A config file path, or the name of a preset shipped in ``scripts/grid/presets``."""
    path = Path(name)
    if path.is_file():
        return path
    preset = PRESETS_DIR / f"{name}.toml"
    if preset.is_file():
        return preset
    raise PTQUserError(f"{name} is neither a config file nor a preset; presets: {', '.join(available_presets())}")


def load_config(name: str | Path) -> GridConfig:
    """Read and validate a grid config (a path to .toml/.yaml/.yml, or a preset name)."""
    path = resolve_config_path(name)
    data = read_structured_file(path, "config")
    return parse_config(data, default_name=path.stem, base_dir=path.parent)


def parse_config(data: Any, default_name: str = "grid", base_dir: Path | None = None) -> GridConfig:
    """Validate a config already read into dicts and lists."""
    data = _table(data, "the config")
    _no_unknown(data, TOP_KEYS, "the config")
    models = tuple(_model(m, i) for i, m in enumerate(_list(data, "models")))
    methods = tuple(_method(m, i) for i, m in enumerate(_list(data, "methods")))
    datasets = tuple(_dataset(d, i) for i, d in enumerate(_list(data, "datasets")))
    for kind, items in (("model", models), ("method", methods), ("dataset", datasets)):
        labels = [x.label for x in items]
        dup = next((lab for lab in labels if labels.count(lab) > 1), None)
        if dup is not None:
            raise PTQUserError(f"two {kind}s are labelled {dup!r}; labels must be unique")
    baseline = data.get("baseline")
    if baseline is not None and baseline not in {m.label for m in methods}:
        raise PTQUserError(f"baseline {baseline!r} is not a method label; methods: {', '.join(m.label for m in methods)}")
    published = data.get("published")
    if published is not None:
        published = _read_published(Path(base_dir or ".") / _str(published, "published"))
    return GridConfig(
        name=_str(data.get("name", default_name), "name"), models=models, methods=methods, datasets=datasets,
        calibration=_calibration(data.get("calibration", {})), eval=_evaluation(data.get("eval", {})),
        baseline=baseline, published=published, description=_str(data.get("description", ""), "description"),
        device=_str(data.get("device", "cpu"), "device"),
    )


def _read_published(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PTQUserError(f"published numbers file {path} does not exist")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("numbers"), dict):
        raise PTQUserError(f"published numbers file {path} must hold {{'numbers': {{method: {{model: {{dataset: ppl}}}}}}}}")
    return data


def _model(item: Any, i: int) -> ModelEntry:
    if isinstance(item, str):
        return ModelEntry(label=item, id=item)
    item = _table(item, f"models[{i}]")
    _no_unknown(item, {"label", "id"}, f"models[{i}]")
    ident = _str(item.get("id"), f"models[{i}].id")
    return ModelEntry(label=_str(item.get("label", ident), f"models[{i}].label"), id=ident)


def _method(item: Any, i: int) -> MethodEntry:
    where = f"methods[{i}]"
    item = _table(item, where)
    _no_unknown(item, {"label", "steps", "dtype", "family", "autocast"}, where)
    label = _str(item.get("label"), f"{where}.label")
    steps = item.get("steps", [])
    if not isinstance(steps, list):
        raise PTQUserError(f"method {label!r}: steps must be a list of tables")
    dtype = _str(item.get("dtype", "float32"), f"method {label!r} dtype")
    if dtype not in DTYPES:
        raise PTQUserError(f"method {label!r}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    autocast = item.get("autocast")
    if autocast is not None:
        from calibration.runner.block_inputs import AUTOCAST_DTYPES

        if autocast not in AUTOCAST_DTYPES:
            raise PTQUserError(f"method {label!r}: autocast must be one of {', '.join(AUTOCAST_DTYPES)}, got {autocast!r}")
    entry = MethodEntry(label=label, steps=tuple(steps), dtype=dtype, family=_str(item.get("family", ""), f"{where}.family"),
                        autocast=autocast)
    try:
        entry.resolved_steps()
    except (ValueError, TypeError) as exc:
        raise PTQUserError(f"method {label!r}: {exc}") from None
    return entry


def _dataset(item: Any, i: int) -> DatasetEntry:
    if isinstance(item, str):
        return DatasetEntry(label=item, source=item)
    item = _table(item, f"datasets[{i}]")
    _no_unknown(item, {"label", "source", "max_windows"}, f"datasets[{i}]")
    source = _str(item.get("source"), f"datasets[{i}].source")
    mw = item.get("max_windows")
    return DatasetEntry(label=_str(item.get("label", source), f"datasets[{i}].label"), source=source,
                        max_windows=None if mw is None else _int(mw, f"datasets[{i}].max_windows"))


def _calibration(item: Any) -> Calibration:
    item = _table(item, "[calibration]")
    _no_unknown(item, {"source", "nsamples", "seqlen", "seed", "seeds", "batch_size", "bos"}, "[calibration]")
    if "seed" in item and "seeds" in item:
        raise PTQUserError("[calibration] takes 'seed' or 'seeds' (repeats), not both")
    seeds = item.get("seeds", [item.get("seed", 0)])
    if not isinstance(seeds, list) or not seeds:
        raise PTQUserError(f"[calibration] seeds must be a non-empty list of integers, got {seeds!r}")
    seeds = tuple(_int(s, "[calibration] seed", minimum=0) for s in seeds)
    if len(set(seeds)) != len(seeds):
        raise PTQUserError(f"[calibration] seeds repeat a value: {list(seeds)}")
    d = Calibration()
    source = _str(item.get("source", d.source), "[calibration] source")
    _check_source(source)
    bos = item.get("bos", d.bos)
    if bos not in BOS_CHOICES:
        raise PTQUserError(f"[calibration] bos must be one of {', '.join(BOS_CHOICES)}, got {bos!r}")
    return Calibration(
        source=source, bos=bos,
        nsamples=_int(item.get("nsamples", d.nsamples), "[calibration] nsamples"),
        seqlen=_int(item.get("seqlen", d.seqlen), "[calibration] seqlen", minimum=2),
        seeds=seeds, batch_size=_int(item.get("batch_size", d.batch_size), "[calibration] batch_size"),
    )


def _check_source(source: str) -> None:
    """A calibration source or mixture the data layer knows (a hub source is not fetched here)."""
    from calibration.data.mixture import parse_mixture

    try:
        parse_mixture(source)
    except ValueError as exc:
        raise PTQUserError(f"[calibration] source: {exc}") from None


def _evaluation(item: Any) -> Evaluation:
    item = _table(item, "[eval]")
    _no_unknown(item, {"seqlen", "max_windows", "native_dtype", "window_seed", "bos", "kl_topk"}, "[eval]")
    mw = item.get("max_windows")
    native = item.get("native_dtype", False)
    if not isinstance(native, bool):
        raise PTQUserError(f"[eval] native_dtype must be true or false, got {native!r}")
    bos = item.get("bos", "auto")
    if bos not in ("auto", True, False):
        raise PTQUserError(f"[eval] bos must be \"auto\", true or false, got {bos!r}")
    seed = item.get("window_seed")
    return Evaluation(seqlen=_int(item.get("seqlen", 512), "[eval] seqlen", minimum=2),
                      max_windows=None if mw is None else _int(mw, "[eval] max_windows"), native_dtype=native,
                      window_seed=None if seed is None else _int(seed, "[eval] window_seed", minimum=0),
                      bos=None if bos == "auto" else bos,
                      kl_topk=None if item.get("kl_topk") is None else _int(item["kl_topk"], "[eval] kl_topk", minimum=0))
