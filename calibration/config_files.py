"""Read a TOML or YAML file (recipes, grid configs) with one clear error per mistake."""
from __future__ import annotations

from pathlib import Path
from typing import Any
from ptq.errors import PTQUserError


def read_structured_file(path: str | Path, what: str) -> Any:
    """The data of a ``.toml`` / ``.yaml`` / ``.yml`` file; ``what`` names it in errors
    (e.g. ``"recipe file"``)."""
    path = Path(path)
    if not path.is_file():
        raise PTQUserError(f"{what} {path} does not exist")
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PTQUserError(f"{what} {path} is not valid TOML: {exc}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PTQUserError(f"{what} {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    raise PTQUserError(f"{what} {path} must end in .toml, .yaml or .yml")
