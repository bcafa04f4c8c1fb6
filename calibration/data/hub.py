"""``wikitext2``, ``ptb``, ``c4``: the papers' Hugging Face hub datasets.

Each is described by a frozen :class:`HubSource` (hub path and config, per-split data
files and split names, text field, joiner, document limit) and loaded with
:func:`datasets.load_dataset`, following the GPTQ reference ``datautils.py``:

- ``wikitext2``: ``wikitext`` / ``wikitext-2-raw-v1``, splits train / test, rows
  (lines, empty ones included) joined with ``"\\n\\n"``.
- ``ptb``: ``ptb_text_only`` / ``penn_treebank``, splits train / test (GPTQ's
  ``get_ptb_new``), the ``sentence`` field joined with ``" "``.
- ``c4``: ``allenai/c4`` with one shard per split: train
  ``en/c4-train.00000-of-01024.json.gz``, test = validation
  ``en/c4-validation.00000-of-00008.json.gz`` cut to its first 1100 documents (GPTQ's
  ``get_c4_new``; GPTQ further truncates to 256 x seqlen tokens, an evaluation
  choice). Documents joined with ``" "``. The train shard is cut to its first 20000
  documents (~9M tokens) so that tokenizing the split stays cheap: GPTQ draws 128
  windows from random documents of the shard, far less text than that.

Without the hub (offline, no network, dataset missing) loading raises
:class:`DatasetUnavailableError`. Tests point a source at local json files with
``dataclasses.replace(SOURCES["ptb"], path="json", name=None, data_files=...)``:
the same loading and joining code runs on them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping
from ptq.errors import PTQUserError

if TYPE_CHECKING:
    import datasets

from .errors import OFFLINE_SOURCES_HINT, DatasetUnavailableError
from .registry import add_source

__all__ = ["HubSource", "WIKITEXT2", "PTB", "C4", "hub_unavailable_errors"]


@functools.lru_cache(maxsize=1)
def hub_unavailable_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the hub / the dataset cannot be reached" (looked up on first
    use: importing ``datasets`` costs ~95 MB, which the offline corpora never need)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, FileNotFoundError]
    for module_name, names in (
        ("huggingface_hub.errors", ("HfHubHTTPError", "EntryNotFoundError", "OfflineModeIsEnabled")),
        ("datasets.exceptions", ("DatasetNotFoundError", "DataFilesNotFoundError")),
        ("requests.exceptions", ("RequestException",)),
        ("httpx", ("TransportError",)),
        ("httpx2", ("TransportError",)),
    ):
        try:
            module = __import__(module_name, fromlist=list(names))
        except Exception:  # optional HTTP stacks differ between versions
            continue
        errors.extend(getattr(module, name) for name in names if hasattr(module, name))
    return tuple(dict.fromkeys(errors))


@dataclass(frozen=True)
class HubSource:
    """How to load one hub dataset as a ``train`` / ``test`` text source.

    Attributes:
        source: registry name (used in messages).
        path: hub id or ``datasets`` builder name (``"json"`` for local files).
        name: dataset config name, or ``None``.
        data_files: file pattern(s) per canonical split (``"train"``, ``"test"``),
            passed as ``{hub_split: files}`` for the requested split only.
        splits: canonical split -> the dataset's own split name.
        text_field: column holding the text.
        joiner: string between documents when the split is joined into one text.
        max_documents: per canonical split, keep only the first N documents.
        revision: hub revision (branch, tag or commit), or ``None``.
        cache_dir: ``datasets`` cache folder, or ``None`` for the default.
    """

    source: str
    path: str
    name: str | None = None
    data_files: Mapping[str, str | list[str]] | None = None
    splits: Mapping[str, str] = field(default_factory=lambda: {"train": "train", "test": "test"})
    text_field: str = "text"
    joiner: str = "\n\n"
    max_documents: Mapping[str, int] = field(default_factory=dict)
    revision: str | None = None
    cache_dir: str | None = None

    def describe(self) -> str:
        """``'path' config 'name'`` for messages."""
        return repr(self.path) + (f" config {self.name!r}" if self.name else "")

    def load(self, split: str) -> "datasets.Dataset":
        """Load a canonical split as a dataset with one ``text`` column."""
        import datasets

        hub_split = self.splits[split]
        kwargs: dict[str, object] = {"split": hub_split}
        if self.data_files is not None:
            kwargs["data_files"] = {hub_split: self.data_files[split]}
        if self.revision is not None:
            kwargs["revision"] = self.revision
        if self.cache_dir is not None:
            kwargs["cache_dir"] = self.cache_dir
        try:
            dataset = datasets.load_dataset(self.path, self.name, **kwargs)
        except hub_unavailable_errors() as exc:
            raise DatasetUnavailableError(
                f"dataset {self.source!r} ({self.describe()}, split {hub_split!r}) could not "
                f"be loaded: the Hugging Face hub could not be reached or has no such "
                f"dataset ({type(exc).__name__}: {exc}). Other {OFFLINE_SOURCES_HINT}"
            ) from exc
        except RuntimeError as exc:
            if "scripts are no longer supported" not in str(exc):
                raise
            raise DatasetUnavailableError(
                f"dataset {self.source!r} ({self.describe()}) is a loading-script dataset, "
                f"which this version of `datasets` cannot load ({exc}); "
                f"{OFFLINE_SOURCES_HINT}"
            ) from exc
        return self._text_only(dataset, split)

    def _text_only(self, dataset: "datasets.Dataset", split: str) -> "datasets.Dataset":
        if self.text_field not in dataset.column_names:
            raise PTQUserError(
                f"dataset {self.source!r} has no field {self.text_field!r} "
                f"(columns: {', '.join(dataset.column_names)})"
            )
        limit = self.max_documents.get(split)
        if limit is not None and len(dataset) > limit:
            dataset = dataset.select(range(limit))
        dataset = dataset.select_columns([self.text_field])
        if self.text_field != "text":
            dataset = dataset.rename_column(self.text_field, "text")
        return dataset


WIKITEXT2 = HubSource("wikitext2", path="wikitext", name="wikitext-2-raw-v1", joiner="\n\n")
PTB = HubSource(
    "ptb", path="ptb_text_only", name="penn_treebank", text_field="sentence", joiner=" "
)
C4 = HubSource(
    "c4",
    path="allenai/c4",
    data_files={
        "train": "en/c4-train.00000-of-01024.json.gz",
        "test": "en/c4-validation.00000-of-00008.json.gz",
    },
    splits={"train": "train", "test": "validation"},
    joiner=" ",
    max_documents={"train": 20000, "test": 1100},
)

for _spec in (WIKITEXT2, PTB, C4):
    add_source(_spec.source, _spec)
