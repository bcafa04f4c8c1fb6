"""Run several ``ptq`` commands in one process, in order (``python dist_cli_steps.py JSON``: a list of
argument lists); each rank of a ``torchrun`` launch runs them all, so one launch tests several commands."""
from __future__ import annotations

import json
import sys

from scripts.cli import main

if __name__ == "__main__":
    for argv in json.loads(sys.argv[1]):
        code = main(argv)
        if code:
            sys.exit(code)
