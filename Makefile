# berth: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := var/demo
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: run test bench demo install protos clean perf-analyzer

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo,test]'
	touch $@

install: $(STAMP)

# builds only what is missing (berth demo build is idempotent)
demo: $(STAMP)
	$(BIN)/berth demo build --out $(DEMO)

run: demo
	$(BIN)/berth serve --config $(DEMO)/berth.yaml

test: demo perf-analyzer
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: demo
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/http_classic.py

# regenerate the gRPC code from src/berth/grpc/protos (a test checks it is current)
protos: $(STAMP)
	$(BIN)/python -m berth.grpc.build_protos

clean:
	rm -rf $(VENV) var build *.egg-info src/*.egg-info

# Triton's perf_analyzer (from the tritonclient 2.40.0 wheel) into var/tools, for its
# smoke test and bench/v2.py; kept out of .venv, which holds a newer tritonclient
include perf_analyzer.mk
