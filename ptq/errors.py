"""``PTQUserError``: a mistake the user can fix (a bad flag, spec, recipe, checkpoint or corpus).

The command line shows a ``PTQUserError`` as one line and exits with code 2; any other exception
is a bug (or an unexpected failure) and keeps its traceback. It subclasses ``ValueError`` so that
callers catching ``ValueError`` keep working.
"""
from __future__ import annotations


class PTQUserError(ValueError):
    """Something the user asked for is wrong; the message says what and what to do instead."""
