# The README's two commands: `make run` and `make test`. Both set up everything they need and are
# quiet when there is nothing to do.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever a dependency list changes.
INSTALL_STAMP := $(VENV)/.install-$(shell cat pyproject.toml Makefile | sha1sum | cut -c1-12)
WEBUI_STAMP := webui/dist/.build-stamp
WEBUI_SOURCES := $(shell find webui -path webui/node_modules -prune -o -path webui/dist -prune -o -type f -print 2>/dev/null)
PYTEST_ARGS ?=

# Upstream chatterbox-tts is installed without its dependencies (it pins an older torch);
# the libraries it builds on come from the `parity` extra.
UPSTREAM := chatterbox-tts==0.1.7

.PHONY: run test lint bench setup system-deps webui clean

run: setup webui
	$(BIN)/chatterbox-server

test: setup system-deps webui lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	@if [ -f webui/package.json ]; then cd webui && npx --no-install vitest run; fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

setup: $(INSTALL_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALL_STAMP): $(VENV)/bin/python pyproject.toml
	@echo "Installing Python dependencies into $(VENV) ..."
	@$(BIN)/pip install -q -e '.[engine,server,operator,dev,parity]' > $(VENV)/pip.log 2>&1 \
		|| { grep -v 'is ignored' $(VENV)/pip.log; exit 1; }
	@$(BIN)/pip install -q --no-deps $(UPSTREAM) > $(VENV)/pip.log 2>&1 \
		|| { grep -v 'is ignored' $(VENV)/pip.log; exit 1; }
	@$(BIN)/python -c "import chatterbox_engine, chatterbox_server, chatterbox_operator"
	@rm -f $(VENV)/.install-*
	@touch $@

# Debian packages the tests need: headless Chromium for the browser tests (never a downloaded browser
# build) and nginx for the web UI proxy test (webui/nginx.conf).
system-deps:
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian$$missing ..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

webui: $(WEBUI_STAMP)

$(WEBUI_STAMP): $(WEBUI_SOURCES)
	@if [ -f webui/package.json ]; then \
		echo "Building the web UI ..."; \
		cd webui && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent && touch dist/.build-stamp; \
	fi

clean:
	rm -rf $(VENV) webui/node_modules webui/dist
