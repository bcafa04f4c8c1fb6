"""evaluations: perplexity (paper protocol), footprint, throughput, tables and plots."""
from evaluations.footprint import Footprint, footprint, packed_weight_bytes
from evaluations.perplexity import PerplexityResult, perplexity, perplexity_from_ids, windows

__all__ = ["Footprint", "PerplexityResult", "footprint", "packed_weight_bytes", "perplexity", "perplexity_from_ids", "windows"]
