"""calibration: corpora, observers, model loading, recipes and the block-by-block runner.

Sits on top of :mod:`ptq`; knows nothing about perplexity or tables.
"""
