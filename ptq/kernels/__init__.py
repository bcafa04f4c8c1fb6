"""Integer compute kernels (int8 x int8 -> int32 matmul) used by the W8A8 modules."""
from ptq.kernels.int8_matmul import BACKENDS, fbgemm_pack, int8_matmul, int_mm_supported

__all__ = ["BACKENDS", "fbgemm_pack", "int8_matmul", "int_mm_supported"]
