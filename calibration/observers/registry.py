"""Observers by name: :data:`OBSERVERS`, :func:`register_observer`, :func:`make_observer`."""
from __future__ import annotations

import inspect
from typing import Any, Callable

from calibration.observers.base import Observer
from ptq.errors import PTQUserError

OBSERVERS: dict[str, type[Observer]] = {}

_DEFAULT_AXIS: Any = object()


def register_observer(name: str) -> Callable[[type[Observer]], type[Observer]]:
    """Class decorator: register an :class:`Observer` subclass under ``name``."""

    def decorate(cls: type[Observer]) -> type[Observer]:
        if name in OBSERVERS and OBSERVERS[name] is not cls:
            raise PTQUserError(f"an observer named {name!r} is already registered ({OBSERVERS[name].__name__})")
        cls.name = name
        OBSERVERS[name] = cls
        return cls

    return decorate


def observer_arguments(name: str) -> list[str]:
    """Keyword arguments (besides ``axis``) accepted by the observer ``name``."""
    params = inspect.signature(OBSERVERS[name].__init__).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.name not in ("self", "axis") and p.kind in kinds]


def make_observer(name: str, axis: int | None = _DEFAULT_AXIS, **kwargs: Any) -> Observer:
    """Build the observer registered as ``name``.

    ``axis`` defaults to the observer's own default (``None``, per tensor, for all but
    ``absmax-per-channel`` and ``rms-per-channel``, whose default is ``-1``). Unknown names or keyword arguments raise
    ``ValueError`` listing what is accepted.
    """
    if name not in OBSERVERS:
        raise PTQUserError(f"unknown observer {name!r}; known: {', '.join(sorted(OBSERVERS))}")
    accepted = observer_arguments(name)
    unknown = [k for k in kwargs if k not in accepted]
    if unknown:
        raise PTQUserError(
            f"observer {name!r} got unknown argument(s) {', '.join(repr(k) for k in unknown)}; "
            f"it accepts: {', '.join(['axis', *accepted])}"
        )
    if axis is not _DEFAULT_AXIS:
        kwargs["axis"] = axis
    return OBSERVERS[name](**kwargs)
