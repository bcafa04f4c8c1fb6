"""Observers: mergeable running statistics that give quantization ranges.

``make_observer(name, axis=..., **kwargs)`` builds a registered one; every observer has
``update(x)``, ``merge(other)``, ``range()``, ``qparams(spec)`` and ``reset()``
(:class:`Observer`). Registered names: ``minmax``, ``moving-average``, ``percentile``,
``mse``, ``absmax-per-channel``, ``rms-per-channel``, ``meanabs-per-channel``.
"""
from calibration.observers.base import Observer
from calibration.observers.registry import OBSERVERS, make_observer, observer_arguments, register_observer
from calibration.observers.minmax import MinMaxObserver
from calibration.observers.moving_average import MovingAverageMinMaxObserver
from calibration.observers.percentile import PercentileObserver
from calibration.observers.mse import MSEObserver
from calibration.observers.absmax import AbsMaxObserver
from calibration.observers.rms import RMSObserver
from calibration.observers.meanabs import MeanAbsObserver

__all__ = [
    "OBSERVERS",
    "AbsMaxObserver",
    "MSEObserver",
    "MeanAbsObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "PercentileObserver",
    "RMSObserver",
    "make_observer",
    "observer_arguments",
    "register_observer",
]
