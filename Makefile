# Two entry points (see README): `make demo` and `make test`. Both set up
# everything they need in ./.venv on a fresh machine (PyPI is the only network used).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-ui install-server install-dev install-ui browser peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install-server: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server]'

install-dev: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server,postgres,fast-embed,dev]'

## The main job: embedded server, bundled Cranfield, mode x top_k grid, HTML report.
demo: install-server
	$(BIN)/llamaeval demo --out reports/demo

## Peer SDK venvs for tests/server/test_server_sdk_peers.py (the official LlamaCloud SDKs, pinned).
## Each venv is built once: its stamp names the pins, so changing a pin rebuilds it and a second `make` does nothing.
empty :=
space := $(empty) $(empty)
PEERS          := .venv-peers
PEER_FERN_PINS := llama-cloud==0.1.46
PEER_LI_PINS   := llama-index-indices-managed-llama-cloud==0.12.0 llama-cloud==1.6.0 llama-index-core==0.14.25
PEER_FERN_STAMP := $(PEERS)/fern/.stamp-$(subst ==,-,$(subst $(space),_,$(PEER_FERN_PINS)))
PEER_LI_STAMP   := $(PEERS)/llamaindex/.stamp-$(subst ==,-,$(subst $(space),_,$(PEER_LI_PINS)))

peers: $(PEER_FERN_STAMP) $(PEER_LI_STAMP)

$(PEER_FERN_STAMP):
	rm -rf $(PEERS)/fern
	$(PYTHON) -m venv $(PEERS)/fern
	$(PEERS)/fern/bin/python -m pip install --quiet $(PEER_FERN_PINS)
	touch $@

$(PEER_LI_STAMP):
	rm -rf $(PEERS)/llamaindex
	$(PYTHON) -m venv $(PEERS)/llamaindex
	$(PEERS)/llamaindex/bin/python -m pip install --quiet $(PEER_LI_PINS)
	touch $@

## The whole test suite, notebooks included (nbval).
test: install-dev peers
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider -q
	$(MAKE) --no-print-directory test-ui

## The UI in a real browser: JupyterLab runs each notebook in headless Chromium, the widgets are
## driven, output heights bounded, the HTML report opened. Screenshots + heights.json: test-artifacts/ui/.
## About 3 minutes; `make test` runs it after the rest of the suite.
install-ui: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server,postgres,dev,ui]'

## Debian's chromium + chromium-driver, installed when missing (needs root, as on CI); without
## root and without them, test-ui says so and is skipped.
browser:
	@if command -v chromium >/dev/null && test -x /usr/bin/chromedriver; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	else echo "test-ui: chromium/chromium-driver missing and not root: install them (apt-get install chromium chromium-driver) to run the browser tests"; fi

test-ui: install-ui browser
	@if command -v chromium >/dev/null && test -x /usr/bin/chromedriver; then \
	  LLAMAEVAL_UI_TESTS=1 $(BIN)/python -m pytest tests/ui -p no:cacheprovider -q; \
	else echo "test-ui: SKIPPED (no chromium)"; fi

clean:
	rm -rf $(VENV) $(PEERS) reports .pytest_cache test-artifacts
