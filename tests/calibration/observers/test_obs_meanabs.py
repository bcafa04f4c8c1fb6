"""Observer ``meanabs-per-channel``: AWQ's activation magnitude, mergeable."""
import pytest
import torch

from calibration.observers import make_observer


@pytest.mark.parametrize("axis", [-1, None])
def test_meanabs_is_the_mean_magnitude_merges_and_keeps_the_max(axis):
    torch.manual_seed(0)
    a, b = torch.randn(2, 16, 8) * 3, torch.randn(3, 5, 8)
    vals = torch.cat([a.reshape(-1, 8), b.reshape(-1, 8)]).t()  # [channels, values]
    if axis is None:
        vals = vals.reshape(1, -1)
    obs = make_observer("meanabs-per-channel", axis=axis)
    obs.update(a)
    obs.update(b)
    torch.testing.assert_close(obs.meanabs, vals.abs().mean(dim=1).reshape(obs.meanabs.shape))
    assert torch.equal(obs.absmax, vals.abs().amax(dim=1).reshape(obs.absmax.shape))
    left, right = make_observer("meanabs-per-channel", axis=axis), make_observer("meanabs-per-channel", axis=axis)
    left.update(a)
    right.update(b)
    left.merge(right)
    torch.testing.assert_close(left.meanabs, obs.meanabs, rtol=1e-6, atol=0)
    assert int(left.count) == int(obs.count)
