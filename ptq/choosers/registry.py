"""Choosers of quantization parameters, registered by name (``minmax``, ``mse``, ``mse-weighted``, ``hqq``,
``q4_0``).

A chooser takes a 2-D weight ``W [rows, cols]`` and a :class:`ptq.QuantSpec` and returns
``(scale, zero)`` in the spec's shapes (:mod:`ptq.spec`); optional context comes as keywords:

* ``importance`` ``[cols]`` (non-negative): how much each input column matters, e.g. ``diag(H)``,
  the energy of each input channel (GPTQ passes it, per group of current columns);
* the chooser's own options (``grid``, ``lp_norm``, ...), which recipes pass as ``qparams_args``.

Adding a chooser is one file and one registration::

    @register_qparams("my-range")
    def my_range(W, spec, importance=None, shrink=0.9):
        return compute_qparams(*(shrink * r for r in reduce_minmax(W, spec)), spec)

RTN and GPTQ (and anything that quantizes weights) call :func:`get_qparams` with the name a
user gave (``--qparams NAME``).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ptq.errors import PTQUserError
from ptq.spec import QuantSpec

QParamsFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]

_REGISTRY: dict[str, "QParamsChooser"] = {}


@dataclass(frozen=True)
class QParamsChooser:
    """A registered chooser: ``chooser(W, spec, importance=None, **options) -> (scale, zero)``.

    Attributes:
        name: the registered name (``--qparams NAME``).
        fn: the function.
        uses_importance: the result depends on ``importance`` (e.g. ``diag(H)``), which only
            methods with calibration statistics (GPTQ) have.
        float_zero: the zero points it returns are real numbers, not integer codes (HQQ); a
            spec for it should have ``zero_dtype`` ``"float16"`` or ``"float32"``.
        options: names of the keyword options ``fn`` accepts besides ``importance``.
        rounding: ``rounding(W, spec) -> codes`` (uint8 ``[rows, cols]``), the format's own reference
            rounding onto the grid ``fn`` chooses, when it is not round-to-nearest on that grid (``q4_0``:
            llama.cpp rounds with the float32 scale and stores it in float16); RTN uses it, GPTQ does not.
    """

    name: str
    fn: QParamsFn
    uses_importance: bool = False
    float_zero: bool = False
    options: tuple[str, ...] = ()
    rounding: Callable[[torch.Tensor, QuantSpec], torch.Tensor] | None = None

    def __call__(self, W: torch.Tensor, spec: QuantSpec, importance: torch.Tensor | None = None,
                 **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_options(options)
        return self.fn(W, spec, importance=importance, **options)

    def check_options(self, options: dict[str, Any]) -> None:
        """``ValueError`` naming the options this chooser does not take."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise PTQUserError(f"qparams {self.name!r} has no option(s) {', '.join(unknown)}; its options: {known}")


def register_qparams(name: str, uses_importance: bool = False, float_zero: bool = False,
                     rounding: Callable[[torch.Tensor, QuantSpec], torch.Tensor] | None = None,
                     ) -> Callable[[QParamsFn], QParamsFn]:
    """Decorator registering ``fn(W, spec, importance=None, **options) -> (scale, zero)`` under ``name``
    (the flags are :class:`QParamsChooser`'s attributes)."""

    def deco(fn: QParamsFn) -> QParamsFn:
        params = inspect.signature(fn).parameters
        if len(params) < 3 or "importance" not in params:
            raise TypeError(f"qparams chooser {name!r} must take (W, spec, importance=None, **options)")
        options = tuple(p for p in list(params)[2:] if p != "importance"
                        and params[p].kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"a qparams chooser named {name!r} is already registered")
        _REGISTRY[name] = QParamsChooser(name, fn, uses_importance, float_zero, options, rounding)
        return fn

    return deco


def qparams_names() -> list[str]:
    """Registered chooser names, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_qparams(name: str | QParamsChooser) -> QParamsChooser:
    """The chooser registered as ``name`` (a chooser is returned as it is); ``ValueError`` otherwise."""
    if isinstance(name, QParamsChooser):
        return name
    _load_builtins()
    if name not in _REGISTRY:
        raise PTQUserError(f"unknown qparams {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def choose_qparams(name: str, W: torch.Tensor, spec: QuantSpec, importance: torch.Tensor | None = None,
                   **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, zero)`` of ``W`` by the chooser registered as ``name``."""
    return get_qparams(name)(W, spec, importance=importance, **options)


def legacy_qparams(mse: bool, mse_weighted: bool) -> str | None:
    """The chooser named by the old ``mse`` / ``mse_weighted`` booleans (``None`` when both are off)."""
    if mse_weighted and not mse:
        raise PTQUserError("mse_weighted weighs the mse grid search: it needs mse=True")
    return "mse-weighted" if mse_weighted else "mse" if mse else None


def _load_builtins() -> None:
    import ptq.choosers  # noqa: F401  (registers the built-in choosers)
