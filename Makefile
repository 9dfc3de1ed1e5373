# coresetlab — one command each; every target installs first when .venv is missing.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PROFILE ?= fast
EXP     ?= lenet_autocl
ARGS    ?=
TEST_WORKERS ?= 2

.PHONY: install run test test-full report reproduce publish lint clean-cache help

help:
	@echo "make install | run [EXP=lenet_autocl PROFILE=fast ARGS=...] | test | test-full | report | reproduce [PROFILE=fast|paper] | publish [ARGS=...] | lint"

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[test]'

install: $(BIN)/python

run: install   ## one paper artefact (default: AutoCL Table 2, fast profile), then the report
	$(BIN)/python run.py +experiment=$(EXP) profile=$(PROFILE) $(ARGS)
	$(BIN)/python -m coresetlab.report

test: install  ## fast tests (CI): one pytest-xdist worker per core (TEST_WORKERS=1 for a serial run)
	@$(BIN)/python -c "import xdist" 2>/dev/null || $(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m pytest -m "not slow" -q -n $(TEST_WORKERS) --dist loadfile

test-full: install
	$(BIN)/python -m pytest -q

report: install  ## outputs/ + the committed reference records in results/ -> outputs/report/ (prints the status table's path)
	$(BIN)/python -m coresetlab.report

reproduce: install  ## every artefact's runs for PROFILE (fast|paper|smoke), parents first, then the report
	$(BIN)/python -m coresetlab.reproduce --profile $(PROFILE)

publish: install  ## copy ok paper-profile records from outputs/ into the tracked results/ (ARGS="--experiment X --dry-run")
	$(BIN)/python -m coresetlab.report.publish --profile paper $(ARGS)
	$(BIN)/python -m coresetlab.report --readme

lint: install
	$(BIN)/ruff check src tests run.py experiments

clean-cache:
	rm -rf .cache
