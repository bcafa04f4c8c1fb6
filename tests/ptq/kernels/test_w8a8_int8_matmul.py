"""int8_matmul is exact on every backend, including the fbgemm K-chunking and the extremes."""
import pytest
import torch

from ptq.kernels import int8_matmul


def _ref(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.long() @ b.long().t()).int()


@pytest.mark.parametrize("M,K,N", [(32, 64, 16), (4, 40, 24), (33, 2056, 8), (20, 13, 7)])
@pytest.mark.parametrize("backend", ["auto", "fbgemm", "reference"])
def test_exact_random(M: int, K: int, N: int, backend: str) -> None:
    g = torch.Generator().manual_seed(M + K + N)
    a = torch.randint(-128, 128, (M, K), dtype=torch.int8, generator=g)
    b = torch.randint(-128, 128, (N, K), dtype=torch.int8, generator=g)
    assert torch.equal(int8_matmul(a, b, backend), _ref(a, b))


@pytest.mark.parametrize("backend", ["auto", "int_mm", "fbgemm"])
def test_exact_extremes(backend: str) -> None:
    """Saturation-prone values (|a| = |b| = 127, long K): no int16 saturation, no float rounding."""
    a = torch.full((32, 2048), 127, dtype=torch.int8)
    a[:, ::2] = -128
    b = torch.full((16, 2048), -128, dtype=torch.int8)
    assert torch.equal(int8_matmul(a, b, backend), _ref(a, b))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="int8"):
        int8_matmul(torch.zeros(4, 8), torch.zeros(4, 8, dtype=torch.int8))
    with pytest.raises(ValueError, match="\\[N, K\\]"):
        int8_matmul(torch.zeros(4, 8, dtype=torch.int8), torch.zeros(4, 9, dtype=torch.int8))
    with pytest.raises(ValueError, match="_int_mm"):
        int8_matmul(torch.zeros(4, 8, dtype=torch.int8), torch.zeros(8, 8, dtype=torch.int8), "int_mm")


def test_env_backend_override(monkeypatch: pytest.MonkeyPatch) -> None:
    a = torch.randint(-128, 128, (32, 64), dtype=torch.int8)
    b = torch.randint(-128, 128, (16, 64), dtype=torch.int8)
    monkeypatch.setenv("PTQ_INT8_BACKEND", "fbgemm")
    assert torch.equal(int8_matmul(a, b), _ref(a, b))
    monkeypatch.setenv("PTQ_INT8_BACKEND", "cuda")
    with pytest.raises(ValueError, match="PTQ_INT8_BACKEND"):
        int8_matmul(a, b)
