# The two commands: `make demo` and `make test`. Both do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The Qwen tests also run at the declared lower bound of transformers (pyproject.toml): a small
# overlay venv holding only that transformers (and the huggingface_hub it needs), which falls
# back to .venv for everything else (torch, qwen-vl-utils, pytest) through a .pth line.
TRANSFORMERS_LOWER := 5.17.0
LOWER := .venv-transformers-$(TRANSFORMERS_LOWER)
LOWER_STAMP := $(LOWER)/.installed

.PHONY: demo test test-lower lint bench setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev,lab]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/icl-kit run params/demo.yaml

test: $(STAMP) test-lower
	$(VENV)/bin/ruff check icl_kit tests benchmarks notebooks
	$(VENV)/bin/pytest -q tests
	PYTHONPATH=tests $(VENV)/bin/pytest -q -p nbval_params --nbval-lax notebooks

$(LOWER_STAMP): $(STAMP)
	rm -rf $(LOWER)
	$(PY) -m venv --without-pip $(LOWER)
	$(PY) -m pip --python $(LOWER)/bin/python install -q --no-deps "transformers==$(TRANSFORMERS_LOWER)" "huggingface_hub<2"
	$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > \
	  "$$($(LOWER)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz_kit_venv.pth"
	touch $(LOWER_STAMP)

# About a minute on 2 cores (plus about 30 s to build the overlay once).
test-lower: $(LOWER_STAMP)
	PYTHONPATH=$(CURDIR) $(LOWER)/bin/python -m pytest -q -p no:cacheprovider tests/lvlm/test_qwen.py \
	  tests/lvlm/test_vision_cache.py tests/lvlm/test_prefix_cache.py

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(LOWER) runs data
