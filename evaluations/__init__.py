"""evaluations: perplexity (paper protocol, ± SE over windows), KL to the float model, footprint,
throughput, tables and plots; lm-eval tasks in :mod:`evaluations.lm_eval_adapter` (optional extra)."""
from evaluations.footprint import Footprint, footprint, packed_weight_bytes
from evaluations.kl import KLResult
from evaluations.perplexity import PerplexityResult, perplexity, perplexity_from_ids, resolve_bos, windows
from evaluations.reference import ReferenceLogits, compute_reference, evaluate
from evaluations.windows import WindowPlan, plan_windows

__all__ = ["Footprint", "KLResult", "PerplexityResult", "ReferenceLogits", "WindowPlan", "compute_reference",
           "evaluate", "footprint", "packed_weight_bytes", "perplexity", "perplexity_from_ids", "plan_windows",
           "resolve_bos", "windows"]
