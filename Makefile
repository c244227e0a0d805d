# The two commands in the README: `make demo` and `make test`. Each creates or reuses .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/citywok demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check matcher bot tests bench
	$(BIN)/ruff format --check matcher bot tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.speed

clean:
	rm -rf $(VENV) demo-out bench/out

# Accuracy benchmark (bench/accuracy.py) on a corpus made from Debian-packaged recordings:
# `make bench-accuracy-deps` once (root), then `make bench-accuracy [PROFILE=tiny|large]
# [ARGS="--speed-range 0.75 1.6"]`. Keep the package list in step with bench/corpus_sources.py.
PROFILE ?= default
BENCH_DEBS := espeak-ng fortunes singularity-music drascula-music asc-music sound-theme-freedesktop
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
.PHONY: bench-accuracy bench-accuracy-deps

bench-accuracy-deps:
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_DEBS)

bench-accuracy: $(STAMP)
	nice -n 10 $(BIN)/python -m bench.accuracy --profile $(PROFILE) --write-results $(ARGS)

# Bot latency through the fake Telegram and Discord servers (bench/bot_latency.py, ~3 min).
.PHONY: bench-bot
bench-bot: $(STAMP)
	$(BIN)/python -m bench.bot_latency

# The load goal (bench/load.py, ~2 min): 300 requests from 100 users in 60 s against the bot run
# as its own process, with one core kept busy; writes the Load section of bench/RESULTS.md.
.PHONY: bench-load
bench-load: $(STAMP)
	$(BIN)/python -m bench.load --write $(ARGS)
