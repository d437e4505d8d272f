# Two entry points (see README): `make demo` and `make test`. Both set up
# everything they need in ./.venv on a fresh machine (PyPI is the only network used).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install-server install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install-server: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server]'

install-dev: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server,dev]'

## The main job: embedded server, bundled Cranfield, mode x top_k grid, HTML report.
demo: install-server
	$(BIN)/llamaeval demo --out reports/demo

## The whole test suite, notebooks included (nbval).
test: install-dev
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider -q

clean:
	rm -rf $(VENV) reports .pytest_cache
