"""The per-token int8 grid: the clamp-free row quantizer equals the general one bit for bit."""
from __future__ import annotations

import torch

from ptq.algorithms.absmax import QMAX, absmax_scale, quantize_rows, quantize_symmetric


def test_quantize_rows_equals_clamped_quantizer_on_edge_rows():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 300, generator=g) * torch.logspace(-30, 30, 64).reshape(-1, 1)
    x[0] = 0.0  # all-zero row: scale 1, codes 0
    x[1, :] = 1e-3
    x[1, 7] = -1.0  # the absmax is negative
    s = absmax_scale(x[2].abs().max())
    x[2, :50] = (torch.arange(50) - 25 + 0.5) * s  # exact ties of the grid (round half to even)
    x[3] = torch.finfo(torch.float32).max * torch.linspace(-1, 1, 300)
    x[4] = torch.finfo(torch.float32).tiny * torch.linspace(-1, 1, 300)  # subnormal steps
    q, scale = quantize_rows(x)
    ref_scale = absmax_scale(x.abs().amax(dim=-1, keepdim=True))
    assert torch.equal(scale, ref_scale)
    assert torch.equal(q, quantize_symmetric(x, ref_scale))
    assert int(q.abs().max()) == QMAX and not q[0].any()


def test_quantize_rows_takes_bfloat16_and_3d():
    x = torch.randn(2, 5, 64).bfloat16()
    q, s = quantize_rows(x)
    assert q.shape == (2, 5, 64) and s.shape == (2, 5, 1) and s.dtype == torch.float32
    assert torch.equal(q, quantize_symmetric(x, s))
