# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench venv clean

# torch is pinned first: an unpinned torch pulls several GB of CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# `make run PORT=8081` serves the API on another port; only a PORT given on the command
# line counts, not one that happens to be in the environment.
run: $(STAMP)
	$(BIN)/modelbus up --demo $(if $(filter command line,$(origin PORT)),$(if $(PORT),--port $(PORT)))

test: $(STAMP)
	scripts/ensure-mariadb.sh
	scripts/ensure-chromium.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	scripts/ensure-mariadb.sh
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) modelbus.db modelbus.db-wal modelbus.db-shm
