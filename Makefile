# The two commands: `make demo` and `make test`. Both do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/icl-kit run params/demo.yaml

test: $(STAMP)
	$(VENV)/bin/ruff check icl_kit tests benchmarks notebooks
	$(VENV)/bin/pytest -q tests
	$(VENV)/bin/pytest -q --nbval-lax notebooks

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) runs data
