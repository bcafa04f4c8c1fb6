"""Recipes: ordered lists of registered algorithm steps."""
from calibration.recipes.step import STEPS, Step, make_step, register_step
from calibration.recipes.recipe import Recipe
from calibration.recipes import rtn as _rtn  # noqa: F401  (registers "rtn")
from calibration.recipes.rtn import RTNStep

__all__ = ["STEPS", "Recipe", "RTNStep", "Step", "make_step", "register_step"]
from calibration.recipes.activation_stats import ActivationStats, ActivationStatsStep

__all__ += ["ActivationStats", "ActivationStatsStep"]
from calibration.recipes.gptq import GPTQStep  # noqa: E402  (registers "gptq")

__all__ += ["GPTQStep"]
from calibration.recipes.smoothquant import SmoothQuantStep  # noqa: E402  (registers "smoothquant")
from calibration.recipes.w8a8 import W8A8Step  # noqa: E402  (registers "w8a8")
from calibration.recipes.llm_int8 import LLMInt8Step  # noqa: E402  (registers "llm-int8")


def _register_all() -> None:
    """Import every step module of this package, so that a new step file registers with no edit here."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_register_all()
from calibration.recipes.awq import AWQStep  # noqa: E402

__all__ += ["AWQStep"]
