"""Choosers of quantization parameters ``(scale, zero)``, registered by name.

``get_qparams("hqq")(W, spec)``; the registry and the chooser interface are in
:mod:`ptq.choosers.registry`; one file per chooser family registers its names.
"""
from ptq.choosers.registry import (
    QParamsChooser,
    choose_qparams,
    get_qparams,
    legacy_qparams,
    qparams_names,
    register_qparams,
)
from ptq.choosers import builtin, hqq, q4_0  # noqa: E402,F401  (register minmax, mse, mse-weighted; hqq; q4_0)

__all__ = ["QParamsChooser", "choose_qparams", "get_qparams", "legacy_qparams", "qparams_names", "register_qparams"]
