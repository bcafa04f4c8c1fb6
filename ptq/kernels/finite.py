"""Is every value of a tensor finite? :func:`all_finite`, in one read and without a boolean copy.

``torch.isfinite(x).all()`` writes an ``x``-sized boolean tensor and reads it again; on a
calibration activation ``[B, S, H]`` that costs more than the statistic it guards. A NaN or an
infinity anywhere in ``x`` makes ``sum(x)`` NaN or infinite (IEEE 754: ``inf + -inf`` is NaN, NaN
absorbs everything), so a finite sum proves every value finite. A non-finite sum can also come
from finite values whose sum overflows (float16 above 65504); only then is ``x`` checked element
by element, a slab of rows at a time (no ``x``-sized boolean temporary).
"""
from __future__ import annotations

import torch


def all_finite(x: torch.Tensor, rows: int = 1024) -> bool:
    """``True`` when ``x`` holds no NaN and no infinity (integer tensors always)."""
    if not (x.is_floating_point() or x.is_complex()) or x.numel() == 0:
        return True
    if bool(torch.isfinite(x.sum())):
        return True
    flat = x.reshape(-1, x.shape[-1]) if x.dim() > 1 else x.reshape(1, -1)
    return all(bool(torch.isfinite(flat[i : i + rows]).all()) for i in range(0, flat.shape[0], rows))
