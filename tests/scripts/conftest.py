"""Fixtures of the CLI tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A small local ``.txt`` calibration / evaluation corpus (30 paragraphs of 120 words)."""
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    path.write_text("\n\n".join(f"Paragraph {i}. " + " ".join(f"word{(i * 7 + j) % 97}" for j in range(120))
                                for i in range(30)))
    return path
