"""Before a grid runs: does it need the Hugging Face hub, and is the hub reachable?

Offline, a config naming hub models (``facebook/opt-125m``) or hub datasets
(``wikitext2``, ``ptb``, ``c4``) fails at once with one message listing all of them,
instead of after the first model was quantized.
"""
from __future__ import annotations

from pathlib import Path

from scripts.grid.config import GridConfig
from ptq.errors import PTQUserError


def hub_needs(config: GridConfig) -> list[str]:
    """The model ids and dataset names of ``config`` that only the hub can provide."""
    from calibration.data import SOURCES, HubSource
    from calibration.models.loading import ALIASES

    needs: list[str] = []
    for m in config.models:
        path = Path(m.id).expanduser()
        if m.id not in ALIASES and not path.exists() and path.suffix != ".gguf":
            needs.append(f"model {m.id}")
    sources = [config.calibration.source] if any(meth.needs_calibration() for meth in config.methods) else []
    for src in sources + [d.source for d in config.datasets]:
        if isinstance(SOURCES.get(src), HubSource) and f"dataset {src}" not in needs:
            needs.append(f"dataset {src}")
    return needs


def check_hub(config: GridConfig) -> None:
    """Raise ``ValueError`` (one line) when the grid needs the hub and it cannot be reached."""
    from calibration import hub_access

    needs = hub_needs(config)
    if needs and not hub_access.hub_reachable():
        raise PTQUserError(
            f"grid {config.name!r} needs the Hugging Face hub, which is unreachable: {', '.join(needs)}; "
            "run it online, or replace them with local stand-ins (--model LABEL=PATH, --dataset LABEL=PATH, --calib PATH)"
        )
