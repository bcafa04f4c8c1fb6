"""Plan a run before it starts: its peak memory, disk and time from the model's config and the
recipe alone (no weights are loaded), and whether this machine can hold it."""
from calibration.plan.check import Capacity, Verdict, judge
from calibration.plan.estimate import Estimate, RunSpec, estimate, estimate_eval, output_bytes
from calibration.plan.machine import available_memory, current_rss, matmul_rate
from calibration.plan.shapes import ModelShape, load_config, model_shape, shape_of_config

__all__ = ["Capacity", "Estimate", "ModelShape", "RunSpec", "Verdict", "available_memory", "current_rss", "estimate",
           "estimate_eval", "judge", "load_config", "matmul_rate", "model_shape", "output_bytes", "shape_of_config"]
