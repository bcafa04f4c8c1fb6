"""The number format of a quantized tensor: :class:`QuantSpec`.

A weight ``W`` of shape ``[out_features, in_features]`` is quantized to unsigned codes
``q in [0, maxq]`` with ``maxq = 2**bits - 1`` and dequantized as ``scale * (q - zero)``.
The granularity says which elements share one ``(scale, zero)`` pair:

* ``tensor``:  the whole tensor (scale shape ``[1, 1]``),
* ``channel``: one output row (scale shape ``[out, 1]``),
* ``group``:   ``group_size`` consecutive input columns of one row
  (scale shape ``[out, in // group_size]``), as in GPTQ's ``groupsize`` option.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal
from ptq.errors import PTQUserError

Granularity = Literal["tensor", "channel", "group"]
GRANULARITIES = ("tensor", "channel", "group")


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize one tensor.

    Args:
        bits: code width, 2 to 8.
        symmetric: GPTQ-reference symmetric grid, ``zero = (maxq + 1) / 2`` and
            ``scale = 2 * max|x| / maxq``; otherwise asymmetric min-max.
        granularity: ``"tensor"``, ``"channel"`` (per output row) or ``"group"``.
        group_size: columns per group; only with ``granularity="group"``.
        include_zero: stretch ``[min, max]`` to contain 0 (the GPTQ reference grid and
            ``torch.ao`` observers do), so that 0 is exactly representable.
        scale_dtype: ``"float32"``, or ``"float16"`` to round every scale to a float16 value
            (computed in float32 all the same), so that checkpoints store float16 scales
            losslessly, as the GPTQ format does.
    """

    bits: int = 4
    symmetric: bool = False
    granularity: Granularity = "channel"
    group_size: int | None = None
    include_zero: bool = True
    scale_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.scale_dtype not in ("float32", "float16"):
            raise PTQUserError(f"scale_dtype must be float32 or float16, got {self.scale_dtype!r}")
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise PTQUserError(f"bits must be an integer from 2 to 8, got {self.bits!r}")
        if not 2 <= self.bits <= 8:
            raise PTQUserError(f"bits must be from 2 to 8, got {self.bits}")
        if self.granularity not in GRANULARITIES:
            raise PTQUserError(
                f"granularity must be one of {', '.join(GRANULARITIES)}, got {self.granularity!r}"
            )
        if self.granularity == "group":
            if self.group_size is None:
                raise PTQUserError("granularity 'group' needs a group_size (e.g. 64 or 128)")
            if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
                raise PTQUserError(f"group_size must be a positive integer, got {self.group_size!r}")
        elif self.group_size is not None:
            raise PTQUserError(
                f"group_size={self.group_size} was given with granularity {self.granularity!r}; "
                "use granularity 'group' to quantize in groups"
            )

    @property
    def maxq(self) -> int:
        """Largest code, ``2**bits - 1``."""
        return (1 << self.bits) - 1

    def check_shape(self, in_features: int, name: str = "the input dimension") -> None:
        """Raise ``ValueError`` if ``group_size`` does not divide ``in_features``."""
        if self.granularity != "group":
            return
        assert self.group_size is not None
        if in_features % self.group_size:
            divisors = [d for d in range(8, in_features + 1) if in_features % d == 0 and d <= 1024]
            hint = ", ".join(str(d) for d in divisors[:10]) or str(in_features)
            raise PTQUserError(
                f"group_size {self.group_size} does not divide {name} ({in_features}); "
                f"group sizes that divide it: {hint}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "QuantSpec":
        return cls(**d)

    def describe(self) -> str:
        """Short label as used in tables: ``W4 g64``, ``W8 per-channel sym``."""
        gran = {"tensor": "per-tensor", "channel": "per-channel"}.get(
            self.granularity, f"g{self.group_size}"
        )
        return f"W{self.bits} {gran}" + (" sym" if self.symmetric else "")
