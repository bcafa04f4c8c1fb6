"""``BlockContext.first_samples``: the first n calibration segments, cut inside a mini-batch when needed."""
import pytest
import torch

from calibration.models.blocks import find_decoder_blocks
from calibration.runner.block_inputs import catch_block_inputs
from calibration.runner.context import BlockContext


@pytest.mark.parametrize("arch", ["llama", "opt", "gpt2"])
def test_first_samples_runs_exactly_those_segments(tiny_model, tiny_segments, arch) -> None:
    model = tiny_model(arch, num_layers=1)
    _, blocks = find_decoder_blocks(model)
    inputs = catch_block_inputs(model, blocks[0], tiny_segments(n=8), batch_size=3)
    ctx = BlockContext(block=blocks[0], index=0, prefix="b", inputs=inputs, records={})
    full = torch.cat(ctx.run())
    assert ctx.first_samples(0) is ctx and ctx.first_samples(8) is ctx
    for n in (1, 3, 4, 7):
        sub = ctx.first_samples(n)
        out = torch.cat(sub.run())
        assert sub.inputs.num_samples == n
        torch.testing.assert_close(out, full[:n], rtol=1e-5, atol=1e-5)
    assert ctx.inputs.num_samples == 8  # the full context is untouched
