"""Sub-commands of ``ptq``; each module has ``HELP``, ``add_arguments(parser)`` and ``run(args)``."""
from __future__ import annotations

from types import ModuleType

from scripts.commands import eval as eval_cmd
from scripts.commands import export as export_cmd
from scripts.commands import inspect as inspect_cmd
from scripts.commands import plan, quantize, reproduce, table

COMMANDS: dict[str, ModuleType] = {
    "quantize": quantize,
    "plan": plan,
    "eval": eval_cmd,
    "export": export_cmd,
    "inspect": inspect_cmd,
    "reproduce": reproduce,
    "table": table,
}
