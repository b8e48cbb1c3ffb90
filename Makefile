# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Each creates .venv and installs the package (with dev extras) when missing or when pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint install browser emoji-font emoji-data emoji-model eval-emoji vqgan-f8 eval-vqgan-f8 mmgen-base \
	eval-mmgen-base mmgen-base-64 eval-mmgen-base-64 shape-verifier eval-judge eval-caption bench screenshots clean

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

# The emoji dataset's images come from Debian's Noto Color Emoji font: installed once, when needed.
emoji-font:
	@fc-list 2>/dev/null | grep -q NotoColorEmoji || test -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf || { \
		echo "installing Debian's fonts-noto-color-emoji"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq fonts-noto-color-emoji >/dev/null; }

emoji-data: $(STAMP) emoji-font  ## data/emoji (training), data/emoji-held-out and data/emoji-reworded (evaluation)
	$(PY) -m mmgen.cli data emoji --out data/emoji --size 64
	$(PY) -m mmgen.cli data emoji --out data/emoji-held-out --size 64 --split held-out
	$(PY) -m mmgen.cli data emoji --out data/emoji-reworded --size 64 --split reworded

# The emoji model, assets/mmgen-emoji (recipes/mmgen-emoji.toml): the tokenizer and the DiT of mmgen-base-64
# fine-tuned on the emoji folder, then evaluated by retrieval on captions worded unlike the training ones.
emoji-model: emoji-data
	$(PY) -m mmgen.cli train-tokenizer --recipe recipes/mmgen-emoji.toml
	$(PY) -m mmgen.cli train-generator --recipe recipes/mmgen-emoji.toml
	$(MAKE) eval-emoji

# At the model's own sampling (its recipe's [sampling]: 30 steps, guidance 7, the tuning sweep's best).
EMOJI_EVAL := --model assets/mmgen-emoji --gallery data/emoji data/emoji-held-out --queries data/emoji-reworded data/emoji-held-out
eval-emoji: $(STAMP)
	$(PY) -m mmgen.cli eval-tokenizer --model assets/mmgen-emoji --folder data/emoji-held-out --out assets/mmgen-emoji/eval_tokenizer.json
	$(PY) -m mmgen.cli eval-retrieval $(EMOJI_EVAL) --tune --out assets/mmgen-emoji/eval_retrieval_tuning.json
	$(PY) -m mmgen.cli eval-retrieval $(EMOJI_EVAL) --out assets/mmgen-emoji/eval_retrieval.json

# The VQ-GAN f8 tokenizer, assets/vqgan-f8 (recipes/vqgan-f8.toml, 38 to 65 min on the 2-core CPU): 128-px images
# to the same 16x16 tokens as the f4 VQ-VAE makes of 64-px ones. Then its held-out evaluation and card.
vqgan-f8: $(STAMP)
	$(PY) -m mmgen.cli train-tokenizer --recipe recipes/vqgan-f8.toml
	$(MAKE) eval-vqgan-f8

eval-vqgan-f8: $(STAMP)
	$(PY) -m mmgen.cli eval-tokenizer --model assets/vqgan-f8 --out assets/vqgan-f8/eval_tokenizer.json
	$(PY) -m mmgen.release --out assets/vqgan-f8 --card

# The shipped model, assets/mmgen-base (recipes/mmgen-base.toml, about 2 h on the 2-core CPU): 128-px shapes, the
# VQ-GAN f8 with its decoder fine-tuned on shapes, and the 64-px model's DiT continued on the f8's latents,
# deepened to 9 blocks and distilled back into 6. Needs assets/mmgen-base-64 and assets/vqgan-f8. Then its evaluation and card (~80 min: the
# tuning sweep that keeps or replaces the library's sampling defaults, then held-out prompts).
mmgen-base: $(STAMP)
	$(PY) -m mmgen.cli train-tokenizer --recipe recipes/mmgen-base.toml
	$(PY) -m mmgen.cli train-generator --recipe recipes/mmgen-base.toml
	$(MAKE) eval-mmgen-base

eval-mmgen-base: $(STAMP)
	$(PY) -m mmgen.cli eval-tokenizer --model assets/mmgen-base --out assets/mmgen-base/eval_tokenizer.json
	$(PY) -m mmgen.cli eval-generator --model assets/mmgen-base --sweep --sweep-schedulers euler-ancestral --sweep-guidance 4 5 --sweep-codebook-snap 0.5 0.7 --sweep-n-single 192 --sweep-n-two 512 --out assets/mmgen-base/generator_sweep.json
	$(PY) -m mmgen.cli eval-generator --model assets/mmgen-base --out assets/mmgen-base/eval_generator.json
	$(PY) -m mmgen.release --out assets/mmgen-base --card

# The strict judge's shape verifier, assets/shape-verifier (about 8 min on the 2-core CPU): trained on drawings,
# calibrated on two labellers' verdicts on generated images (docs/judge-labels-tuning*.json). Then the judge's
# check on right images and wrong drawings, and on a third labelled set, labelled blind (docs/judge.md).
shape-verifier: $(STAMP)
	$(PY) -m mmgen.cli train-verifier --out assets/shape-verifier
	$(MAKE) eval-judge

eval-judge: $(STAMP)
	$(PY) -m mmgen.cli eval-judge --out assets/shape-verifier/eval_judge.json

test: $(STAMP) browser emoji-font  ## the whole test suite, browser tests included
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The 64-px shapes model, assets/mmgen-base-64 (recipes/mmgen-base-64.toml), rebuilt from nothing, exactly
# (seeded): its f4 VQ-VAE (31 min on the 2-core CPU), then its DiT's six stages (about 118 min, encoding included;
# machines of this kind vary: one ran the same steps 1.9x slower than another), each published into the folder.
# Re-running continues where it stopped: finished runs (runs/vqvae-base, runs/generator*) are skipped, an
# interrupted one resumes. Then `eval-mmgen-base-64` evaluates it and rewrites its card (~47 min: three sweeps on
# tuning prompts that chose the sampling defaults, 41.7 min on run 30, then the held-out evaluation).
mmgen-base-64: $(STAMP)
	$(PY) -m mmgen.cli train-tokenizer --recipe recipes/mmgen-base-64.toml
	$(PY) -m mmgen.cli train-generator --recipe recipes/mmgen-base-64.toml
	$(MAKE) eval-mmgen-base-64

# The sampler and snap sweeps use one starting noise per image (--sweep-candidates 1), as when they were chosen;
# the third sweep chooses num_candidates (best-of-N starting noise) at the chosen sampler, guidance and snap.
M64 := assets/mmgen-base-64
eval-mmgen-base-64: $(STAMP)
	$(PY) -m mmgen.cli eval-tokenizer --model $(M64) --out $(M64)/eval_tokenizer.json
	$(PY) -m mmgen.cli eval-generator --model $(M64) --sweep --sweep-candidates 1 --out $(M64)/generator_sweep.json
	$(PY) -m mmgen.cli eval-generator --model $(M64) --sweep --sweep-candidates 1 --sweep-schedulers euler-ancestral --sweep-guidance 3 4 5 --sweep-codebook-snap 0 0.25 0.5 0.75 --sweep-n-single 96 --sweep-n-two 256 --sweep-free --out $(M64)/generator_snap_sweep.json
	$(PY) -m mmgen.cli eval-generator --model $(M64) --sweep --sweep-schedulers euler-ancestral --sweep-guidance 4 --sweep-codebook-snap 0.5 --sweep-candidates 1 4 8 --sweep-n-single 192 --sweep-n-two 512 --sweep-free --out $(M64)/generator_candidates_sweep.json
	$(PY) -m mmgen.cli eval-generator --model $(M64) --out $(M64)/eval_generator.json
	$(PY) -m mmgen.release --out $(M64) --card

# Inside the DiT (docs/captioning.md): the generator read backwards as a captioner on held-out shapes-v1 scenes, and
# whether each word's attention map lands on its object, for the 64-px and the 128-px model (~70 and ~25 min on the
# 2-core CPU). `--tune` on the first command redoes the settings study (on the 64-px model).
eval-caption: $(STAMP)
	$(PY) -m mmgen.cli eval-caption --model $(M64) --out $(M64)/eval_caption.json
	$(PY) -m mmgen.cli eval-attention --model $(M64) --out $(M64)/eval_attention.json
	$(PY) -m mmgen.cli eval-caption --model assets/mmgen-base --out assets/mmgen-base/eval_caption.json
	$(PY) -m mmgen.cli eval-attention --model assets/mmgen-base --out assets/mmgen-base/eval_attention.json

bench: $(STAMP)  ## speed and memory, side by side (benchmarks/results.json)
	$(PY) benchmarks/bench.py

screenshots: $(STAMP) browser  ## README screenshots of each tab (assets/screenshots/)
	$(PY) tests/test_browser.py --out assets/screenshots

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
