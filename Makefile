# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the package (with dev extras) when missing or when pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint install browser train-tokenizer eval-tokenizer train-generator generator-weights eval-generator bench screenshots clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## start the app on http://127.0.0.1:7860
	$(PY) app.py

# The browser tests drive Debian's chromium through Playwright (browser downloads are blocked): install it once.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { echo "error: chromium is still missing"; exit 1; }

test: $(STAMP) browser  ## the whole test suite, browser tests included
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

SCHEDULER ?= euler-ancestral  # the sampler shipped in assets/mmgen-base/scheduler (chosen by `make eval-generator`'s sweep)
# Rebuild the shipped generator exactly (seeded), publish it, evaluate it and rewrite the card: `generator-weights`
# (the six training stages, about 118 min on the 2-core CPU, encoding included), then `eval-generator`
# (~47 min: three sweeps on tuning prompts, 41.7 min on run 30, then the held-out evaluation).
# Six stages: 13,000 steps from scratch; 2,000 more from the published weights on 60,000 new scenes (shapes-v1
# stream 1) at a fifth of the learning rate; 2,000 more again on stage 1's scenes (stream 0, already encoded) with
# another seed, and the same twice more with a fourth and a fifth seed; then 1,000 steps with a sixth seed at a
# quarter of that learning rate. Objects' latent cells weigh 4x the background's in the first two, as much as it
# in the last four (the 4x weighting makes the model draw an object twice; the third stage unlearns that). Machines of this kind vary: one ran the same steps 1.9x slower than another.
train-generator: generator-weights
	$(MAKE) eval-generator

generator-weights: $(STAMP)
	$(PY) -m mmgen.cli train-generator --out runs/generator --steps 13000 --batch-size 64 --mixed-precision bf16 --compile --text-refiner-layers 2 --loss-weighting min-snr-1 --object-loss-weight 4 --seed 0
	$(PY) -m mmgen.release --generator runs/generator --scheduler $(SCHEDULER) --out assets/mmgen-base
	$(PY) -m mmgen.cli train-generator --out runs/generator-stage2 --init-from assets/mmgen-base --steps 2000 --lr 2e-4 --warmup-steps 100 --batch-size 64 --mixed-precision bf16 --compile --loss-weighting min-snr-1 --object-loss-weight 4 --seed 1 --data-seed 1
	$(PY) -m mmgen.release --generator runs/generator-stage2 --scheduler $(SCHEDULER) --out assets/mmgen-base
	$(PY) -m mmgen.cli train-generator --out runs/generator-stage3 --init-from assets/mmgen-base --steps 2000 --lr 4e-4 --warmup-steps 100 --batch-size 64 --mixed-precision bf16 --compile --loss-weighting min-snr-1 --object-loss-weight 1 --seed 2 --data-seed 0
	$(PY) -m mmgen.release --generator runs/generator-stage3 --scheduler $(SCHEDULER) --out assets/mmgen-base
	$(PY) -m mmgen.cli train-generator --out runs/generator-stage4 --init-from assets/mmgen-base --steps 2000 --lr 4e-4 --warmup-steps 100 --batch-size 64 --mixed-precision bf16 --compile --loss-weighting min-snr-1 --object-loss-weight 1 --seed 3 --data-seed 0
	$(PY) -m mmgen.release --generator runs/generator-stage4 --scheduler $(SCHEDULER) --out assets/mmgen-base
	$(PY) -m mmgen.cli train-generator --out runs/generator-stage5 --init-from assets/mmgen-base --steps 2000 --lr 4e-4 --warmup-steps 100 --batch-size 64 --mixed-precision bf16 --compile --loss-weighting min-snr-1 --object-loss-weight 1 --seed 4 --data-seed 0
	$(PY) -m mmgen.release --generator runs/generator-stage5 --scheduler $(SCHEDULER) --out assets/mmgen-base
	$(PY) -m mmgen.cli train-generator --out runs/generator-stage6 --init-from assets/mmgen-base --steps 1000 --lr 1e-4 --warmup-steps 100 --batch-size 64 --mixed-precision bf16 --compile --loss-weighting min-snr-1 --object-loss-weight 1 --seed 5 --data-seed 0
	$(PY) -m mmgen.release --generator runs/generator-stage6 --scheduler $(SCHEDULER) --out assets/mmgen-base

# The sampler and snap sweeps use one starting noise per image (--sweep-candidates 1), as when they were chosen;
# the third sweep chooses num_candidates (best-of-N starting noise) at the chosen sampler, guidance and snap.
eval-generator: $(STAMP)
	$(PY) -m mmgen.cli eval-generator --model assets/mmgen-base --sweep --sweep-candidates 1 --out assets/mmgen-base/generator_sweep.json
	$(PY) -m mmgen.cli eval-generator --model assets/mmgen-base --sweep --sweep-candidates 1 --sweep-schedulers euler-ancestral --sweep-guidance 3 4 5 --sweep-codebook-snap 0 0.25 0.5 0.75 --sweep-n-single 96 --sweep-n-two 256 --sweep-free --out assets/mmgen-base/generator_snap_sweep.json
	$(PY) -m mmgen.cli eval-generator --model assets/mmgen-base --sweep --sweep-schedulers euler-ancestral --sweep-guidance 4 --sweep-codebook-snap 0.5 --sweep-candidates 1 4 8 --sweep-n-single 192 --sweep-n-two 512 --sweep-free --out assets/mmgen-base/generator_candidates_sweep.json
	$(PY) -m mmgen.cli eval-generator --model assets/mmgen-base --out assets/mmgen-base/eval_generator.json
	$(PY) -m mmgen.release --out assets/mmgen-base --card

bench: $(STAMP)  ## speed and memory, side by side (benchmarks/results.json)
	$(PY) benchmarks/bench.py

screenshots: $(STAMP) browser  ## README screenshots of each tab (assets/screenshots/)
	$(PY) tests/test_browser.py --out assets/screenshots

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
