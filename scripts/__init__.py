"""The ``ptq`` command line and benchmark scripts."""
