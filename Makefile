.PHONY: install test test-fast reproduce

install:
	./.ci/install

# The README's test command: the whole suite, real-model tests included.
test: install
	python -m pytest -q

# Local quick loop: skips the slow real-model tests.
test-fast:
	python -m pytest -q -m "not slow"

# The README's main job.
reproduce: install
	ptq reproduce
