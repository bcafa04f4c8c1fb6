"""The coreutils source: Info nodes of the GNU Coreutils manual."""
from __future__ import annotations

import pytest

from calibration.data import load_text
from calibration.data.coreutils import COREUTILS_INFO, info_nodes

INFO = (
    "This is demo.info, produced by makeinfo.\n\nINFO-DIR-SECTION Basics\n"
    "\x1f\nFile: demo.info,  Node: Top,  Next: ls invocation,  Up: (dir)\n\nDemo manual\n***********\n\n"
    "It documents ls.   \n\n* Menu:\n\n* ls invocation::   List files.\n"
    "\x1f\nFile: demo.info,  Node: ls invocation,  Prev: Top,  Up: Top\n\n1 ls\n====\n\n"
    "‘ls’ lists files.\n"
    "\x1f\nFile: demo.info,  Node: Index,  Up: Top\n\n\x00\x08[index\x00\x08]\n* Menu:\n\n* ls: ls invocation. (line 6)\n"
    "\x1f\nTag Table:\nNode: Top\x7f100\n\x1f\nEnd Tag Table\n"
)


def test_info_nodes_keep_prose_only():
    assert info_nodes(INFO) == ["Demo manual\n***********\n\nIt documents ls.", "1 ls\n====\n\n‘ls’ lists files."]


@pytest.mark.skipif(not COREUTILS_INFO.is_file(), reason="coreutils Info manual not installed")
def test_real_manual_splits_into_train_and_test():
    train, test = load_text("coreutils", "train"), load_text("coreutils", "test")
    assert len(test) > 100_000 and len(train) > 3 * len(test)
    assert "File: coreutils.info" not in test and "\x1f" not in train and "* Menu:" not in test
