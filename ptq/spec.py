"""The number format of a quantized tensor: :class:`QuantSpec`.

A weight ``W`` of shape ``[out_features, in_features]`` is quantized to unsigned codes
``q in [0, maxq]`` with ``maxq = 2**bits - 1`` and dequantized as ``scale * (q - zero)``.
The granularity says which elements share one ``(scale, zero)`` pair:

* ``tensor``:  the whole tensor (scale shape ``[1, 1]``),
* ``channel``: one output row (scale shape ``[out, 1]``),
* ``group``:   ``group_size`` consecutive input columns of one row
  (scale shape ``[out, in // group_size]``), as in GPTQ's ``groupsize`` option.

Two extensions, off by default (``to_dict`` leaves them out at their defaults):

* ``zero_dtype``: ``"int"`` (a zero point is a code in ``[0, maxq]``, bit-packed) or
  ``"float16"`` / ``"float32"``: real-valued zero points (HQQ optimises them), stored in that
  dtype; codes are then ``clamp(round(x / scale + zero), 0, maxq)``.
* ``format``: ``"int"`` (the affine grid above) or a 4-bit code book, ``"nf4"`` / ``"fp4"``
  (QLoRA / bitsandbytes, :mod:`ptq.codebook`): ``x = absmax * CODE[q]`` per block of
  ``group_size`` (64 by default), with ``double_quant`` of the absmax constants.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal
from ptq.errors import PTQUserError

Granularity = Literal["tensor", "channel", "group"]
GRANULARITIES = ("tensor", "channel", "group")
ZERO_DTYPES = ("int", "float16", "float32")
FORMATS = ("int", "nf4", "fp4")
CODEBOOK_BLOCK = 64  # bitsandbytes' default block size of nf4 / fp4
_EXTENSIONS = {"zero_dtype": "int", "format": "int", "double_quant": False}


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
        zero_dtype: ``"int"`` (default), ``"float16"`` or ``"float32"`` real-valued zero points
            (asymmetric grids only; see the module docstring).
        format: ``"int"`` (default), ``"nf4"`` or ``"fp4"`` (4-bit code books with one absmax per
            block; ``bits`` must be 4, per-group with ``group_size`` 64 unless given).
        double_quant: quantize the absmax constants of ``nf4`` / ``fp4`` with 8 bits in blocks of
            256 (QLoRA's double quantization).
    """

    bits: int = 4
    symmetric: bool = False
    granularity: Granularity = "channel"
    group_size: int | None = None
    include_zero: bool = True
    scale_dtype: str = "float32"
    zero_dtype: str = "int"
    format: str = "int"
    double_quant: bool = False

    def __post_init__(self) -> None:
        self._check_extensions()
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

    def _check_extensions(self) -> None:
        if self.zero_dtype not in ZERO_DTYPES:
            raise PTQUserError(f"zero_dtype must be one of {', '.join(ZERO_DTYPES)}, got {self.zero_dtype!r}")
        if self.format not in FORMATS:
            raise PTQUserError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        if not isinstance(self.double_quant, bool):
            raise PTQUserError(f"double_quant must be true or false, got {self.double_quant!r}")
        if self.float_zero and self.symmetric:
            raise PTQUserError("a symmetric grid fixes zero = (maxq + 1) / 2; real-valued zero points "
                             "(zero_dtype float) need an asymmetric grid")
        if self.format == "int":
            if self.double_quant:
                raise PTQUserError("double_quant quantizes the absmax constants of format nf4 / fp4; "
                                 "it needs format='nf4' or 'fp4'")
            return
        if self.bits != 4 or self.symmetric or self.zero_dtype != "int":
            raise PTQUserError(f"format {self.format!r} is a 4-bit code book scaled by each block's absmax: "
                             "use bits=4, no symmetric flag and no zero_dtype")
        if self.granularity == "tensor":
            raise PTQUserError(f"format {self.format!r} has one absmax per block of group_size weights; "
                             "per-tensor granularity is not supported")
        if self.group_size is None:
            object.__setattr__(self, "group_size", CODEBOOK_BLOCK)
        object.__setattr__(self, "granularity", "group")

    @property
    def float_zero(self) -> bool:
        """Zero points are real numbers (``zero_dtype`` float16 / float32), not integer codes."""
        return self.zero_dtype != "int"

    @property
    def codebook(self) -> bool:
        """The format is a code book (``nf4`` / ``fp4``), not the affine integer grid."""
        return self.format != "int"

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
        """Fields as a dict; ``zero_dtype``, ``format`` and ``double_quant`` only when not at their
        defaults (older specs keep their spelling)."""
        return {k: v for k, v in asdict(self).items() if not (k in _EXTENSIONS and v == _EXTENSIONS[k])}

    @classmethod
    def from_dict(cls, d: dict) -> "QuantSpec":
        return cls(**d)

    def describe(self) -> str:
        """Short label as used in tables: ``W4 g64``, ``W8 per-channel sym``, ``NF4 g64 DQ``."""
        if self.codebook:
            return f"{self.format.upper()} g{self.group_size}" + (" DQ" if self.double_quant else "")
        gran = {"tensor": "per-tensor", "channel": "per-channel"}.get(
            self.granularity, f"g{self.group_size}"
        )
        return f"W{self.bits} {gran}" + (" sym" if self.symmetric else "") + (" float-zero" if self.float_zero else "")
