"""reST -> prose reduction (the pydocs text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from calibration.data.rest import reduce_inline, rest_to_text

SNIPPET = """\
:mod:`functools` --- Higher-order functions
===========================================

.. module:: functools
   :synopsis: Operations on callable objects.

.. _functools-intro:

.. index:: single: cache

.. |release| replace:: 3.11

The :mod:`functools` module defines :func:`~functools.lru_cache`, see
:ref:`the caching section
<caching>` and :pep:`8`. Use ``cache(f)`` with **care**
and *style*; call ``f(*args, **kwargs)``. Read `the docs <https://docs.python.org>`_.


.. note::

   Notes stay.

.. This is a comment
   spanning two lines.

For example::

    @cache
    def f(x):
        return x * 2

>>> f(2)
4

.. toctree::
   :maxdepth: 2

   tutorial/index.rst
"""

EXPECTED = """\
functools --- Higher-order functions

The functools module defines lru_cache, see
the caching section and PEP 8. Use cache(f) with care
and style; call f(*args, **kwargs). Read the docs.

Notes stay.

For example:

@cache
def f(x):
    return x * 2

>>> f(2)
4"""


def test_known_snippet_reduced_exactly():
    assert rest_to_text(SNIPPET) == EXPECTED


@pytest.mark.parametrize(
    ("markup", "text"),
    [
        (":func:`foo`", "foo"),
        (":ref:`text <label>`", "text"),
        (":meth:`~queue.Queue.put`", "put"),
        (":class:`!Frozen`", "Frozen"),
        (":py:func:`len`", "len"),
        ("``x = *a*``", "x = *a*"),
        ("**bold** and *emph*", "bold and emph"),
        ("f(*args, **kwargs)", "f(*args, **kwargs)"),
        ("a note [#]_ here", "a note here"),
        ("`Python <https://python.org>`__", "Python"),
        ("see :issue:`123`", "see bpo-123"),
        (r"raw\ text", "rawtext"),
    ],
)
def test_inline_roles(markup, text):
    assert reduce_inline(markup) == text


def test_literal_block_keeps_markup_and_indentation():
    source = "Intro::\n\n   x = `a` and :func:`b`\n       nested\n\nAfter :func:`c`.\n"
    assert rest_to_text(source) == "Intro:\n\nx = `a` and :func:`b`\n    nested\n\nAfter c."


def test_list_item_literal_block_ends_at_item_text():
    source = "* Use it::\n\n     code()\n\n  Note that :func:`x` works.\n"
    assert rest_to_text(source) == "* Use it:\n\ncode()\n\nNote that x works."


FUNCTOOLS = Path("/usr/share/doc/python3.11/html/_sources/library/functools.rst.txt")


@pytest.mark.skipif(not FUNCTOOLS.is_file(), reason="python3.11-doc not installed")
def test_real_functools_page():
    text = rest_to_text(FUNCTOOLS.read_text(encoding="utf-8"))
    assert text.startswith("functools --- Higher-order functions")
    assert "The functools module is for higher-order functions" in text
    assert "lru_cache(maxsize=None)" in text
    for markup in (":func:`", ":mod:`", ".. decorator::", ":synopsis:", "=====", "\n\n\n"):
        assert markup not in text
