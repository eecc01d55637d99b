# Two commands do all set-up:  `make demo` (load the bundled sample data into DuckDB)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# test workers (pytest-xdist; each its own Postgres database); tests marked `serial` (request timing) run alone after
WORKERS ?= -n 2

.PHONY: demo test test-once lint emulator bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

demo: $(VENV)/.installed  ## run the main job end to end against the bundled W&B emulator, into DuckDB
	$(PY) pipelines/wandb_pipeline.py --demo

lint: $(VENV)/.installed  ## ruff over the tree, mypy (strict) over the package
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: $(VENV)/.installed  ## lint, the suite under the pessimistic emulator profile, then the server-facing tests (not slow, not one_profile; DuckDB only) under the convenient one (needs PostgreSQL on 127.0.0.1:5432)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	WANDB_EMULATOR_PROFILE=pessimistic $(PY) -m pytest $(WORKERS) -m "not serial" $(PYTEST_ARGS)
	WANDB_EMULATOR_PROFILE=pessimistic $(PY) -m pytest -m "serial" $(PYTEST_ARGS) || [ $$? -eq 5 ]
	WANDB_EMULATOR_PROFILE=convenient $(PY) -m pytest $(WORKERS) -m "not slow and not one_profile and not serial" $(PYTEST_ARGS)
	WANDB_EMULATOR_PROFILE=convenient $(PY) -m pytest -m "serial and not slow and not one_profile" $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-once: $(VENV)/.installed  ## one pass under one profile: make test-once PROFILE=convenient
	WANDB_EMULATOR_PROFILE=$(or $(PROFILE),pessimistic) $(PY) -m pytest $(PYTEST_ARGS)

emulator: $(VENV)/.installed  ## start the W&B emulator on 127.0.0.1:8765 with the demo dataset
	$(PY) -m wandb_source.emulator

bench: $(VENV)/.installed  ## the load benchmark on dataset M (see README, Performance)
	$(PY) tests/benchmarks/bench_load.py --size $(or $(SIZE),M) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
