"""User mistakes and how the CLI reports them: one line on stderr, exit code 2.

A user mistake is a :class:`ptq.errors.PTQUserError` (raised anywhere in the package for what the
user can fix) or an OS error about the user's files and machine (missing file, existing output, no
space, no permission). Any other exception, ``ValueError`` included, is a bug and keeps its traceback.
"""
from __future__ import annotations

import errno

from ptq.errors import PTQUserError


class UsageError(PTQUserError):
    """A mistake in what the user asked for (bad flag combination, existing output, ...)."""


USER_ERRORS: tuple[type[BaseException], ...] = (PTQUserError, FileNotFoundError, FileExistsError, NotADirectoryError)


def is_user_error(exc: BaseException) -> bool:
    """Errors caused by the user's input or machine (not bugs): reported without a traceback."""
    if isinstance(exc, USER_ERRORS):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT)


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"no space left on device while writing {exc.filename or 'the output'}; free some space or choose another --output"
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EROFS):
        return f"cannot write {exc.filename}: {exc.strerror}; choose a writable --output"
    msg = str(exc)
    if isinstance(exc, KeyError):  # pragma: no cover
        msg = msg.strip("'\"")
    return msg.splitlines()[0] if msg else type(exc).__name__
