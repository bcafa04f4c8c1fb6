import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from ptq.errors import PTQUserError
from ptq.layers import (float_class, float_linear, in_out_features, is_linear, linear_weight, resolve_dtype,
                        set_linear_weight, weight_2d)


def test_linear_and_conv1d_share_one_2d_view():
    lin, conv = nn.Linear(6, 4), Conv1D(4, 6)  # both: 6 inputs, 4 outputs
    for m, cls in ((lin, "Linear"), (conv, "Conv1D")):
        assert is_linear(m) and float_class(m) == cls
        assert in_out_features(m) == (6, 4)
        assert weight_2d(m).shape == (4, 6) and linear_weight(m).shape == (4, 6)
        W = torch.randn(4, 6)
        set_linear_weight(m, W)
        torch.testing.assert_close(linear_weight(m), W)
        back = float_linear(W, m.bias.detach(), cls)
        assert type(back) is type(m)
        x = torch.randn(3, 6)
        torch.testing.assert_close(back(x), m(x))
    assert not is_linear(nn.LayerNorm(4))


def test_resolve_dtype_names_and_user_error():
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(PTQUserError, match="unknown dtype 'int3'"):
        resolve_dtype("int3")


def test_write_json_is_atomic_and_encodes_tensors(tmp_path):
    from ptq.jsonable import write_json

    write_json(tmp_path / "a.json", {"t": torch.tensor([1, 2])})
    assert (tmp_path / "a.json").read_text() == '{\n  "t": [\n    1,\n    2\n  ]\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
