# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the package (with dev extras) when missing or when pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint install train-tokenizer eval-tokenizer bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## start the app on http://127.0.0.1:7860
	$(PY) app.py

test: $(STAMP)  ## the whole test suite
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Rebuild the shipped tokenizer exactly (seeded), evaluate it and rewrite the model card.
train-tokenizer: $(STAMP)
	$(PY) -m mmgen.cli train-tokenizer --out runs/vqvae-base --steps 2900 --photo-fraction 0.45 --num-codes 512 --seed 0
	$(PY) -m mmgen.release --vqvae runs/vqvae-base/vqvae --out assets/mmgen-base
	$(MAKE) eval-tokenizer

eval-tokenizer: $(STAMP)
	$(PY) -m mmgen.cli eval-tokenizer --model assets/mmgen-base --out assets/mmgen-base/eval_tokenizer.json
	$(PY) -m mmgen.release --out assets/mmgen-base --card

bench: $(STAMP)
	$(PY) benchmarks/bench_tokenizer.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
