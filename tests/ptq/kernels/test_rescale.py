"""``rescale``: the int32 accumulator's float rescale equals the mixed-dtype multiply it replaces."""
from __future__ import annotations

import pytest
import torch

from ptq.kernels import rescale


@pytest.mark.parametrize("per_tensor", [False, True])
def test_rescale_is_bit_for_bit_the_promoting_multiply(per_tensor):
    g = torch.Generator().manual_seed(0)
    acc = torch.randint(-(2**31) + 1, 2**31 - 1, (33, 40), generator=g, dtype=torch.int32)  # beyond 2**24 too
    s_x = torch.rand(()) if per_tensor else torch.rand(33, 1, generator=g)
    s_w = torch.rand(()) if per_tensor else torch.rand(40, generator=g)
    ref = torch.mul(acc, s_x).mul_(s_w.reshape(1, -1) if s_w.dim() else s_w)
    y = rescale(acc, s_x, s_w)
    assert y.dtype == torch.float32 and torch.equal(y, ref)
    assert torch.equal(rescale(acc, s_x, s_w.reshape(-1, 1) if s_w.dim() else s_w), ref)  # [N, 1] scales too
