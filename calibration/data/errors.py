"""Errors raised by :mod:`calibration.data` when a corpus cannot be obtained."""

from __future__ import annotations

from ptq.errors import PTQUserError

__all__ = ["DatasetUnavailableError", "OFFLINE_SOURCES_HINT"]

#: Sentence appended to every "cannot get this corpus" message: what works without a network.
OFFLINE_SOURCES_HINT = (
    "sources that work offline: web-ot, web-nt, pydocs, coreutils, "
    "or a path to a local .txt/.jsonl file or folder"
)


class DatasetUnavailableError(PTQUserError):
    """A known source exists but its text cannot be obtained on this machine.

    Raised when the Hugging Face hub cannot be reached (offline, no network, dataset not
    found) or when an offline corpus package is not installed. The message says what is
    missing and names the sources that work offline.
    """
