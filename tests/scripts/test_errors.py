"""Only what the user can fix (PTQUserError, OS errors about their files) is one line and exit 2."""
from __future__ import annotations

import errno

import pytest

from ptq.errors import PTQUserError
from scripts import cli
from scripts.errors import is_user_error


def test_user_errors_and_bugs_are_told_apart():
    assert is_user_error(PTQUserError("bad flag")) and is_user_error(FileNotFoundError("x"))
    assert is_user_error(OSError(errno.ENOSPC, "full"))
    assert not is_user_error(ValueError("an internal invariant broke"))
    assert not is_user_error(RuntimeError("bug"))
    assert issubclass(PTQUserError, ValueError)  # `except ValueError` callers keep working


@pytest.mark.parametrize("exc, code", [(PTQUserError("--bits 9: bits must be from 2 to 8"), 2), (ValueError("bug"), None)])
def test_cli_shows_a_user_error_in_one_line_and_a_bug_with_its_traceback(exc, code, capsys, monkeypatch):
    def run(args):
        raise exc

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["eval"].set_defaults(_run=run)
    if code is None:
        with pytest.raises(ValueError, match="bug"):
            cli.main(["eval", "x"])
    else:
        assert cli.main(["eval", "x"]) == 2
        assert capsys.readouterr().err.strip() == "ptq eval: error: --bits 9: bits must be from 2 to 8"
