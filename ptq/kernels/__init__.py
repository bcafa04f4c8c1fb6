"""Integer compute kernels (int8 x int8 -> int32 matmul) used by the W8A8 modules."""
from ptq.kernels.int8_matmul import (
    BACKENDS, PACKABLE_BACKENDS, CPUInt8Support, PackedWeight, choose_backend, cpu_int8_support, fbgemm_pack,
    int8_matmul, int_mm_supported, pack_weight, rescale,
)

__all__ = ["BACKENDS", "PACKABLE_BACKENDS", "CPUInt8Support", "PackedWeight", "choose_backend", "cpu_int8_support",
           "fbgemm_pack", "int8_matmul", "int_mm_supported", "pack_weight", "rescale"]
