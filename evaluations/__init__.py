"""evaluations: perplexity (paper protocol), footprint, throughput, tables and plots."""
