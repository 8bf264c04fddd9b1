# whisperd — the two commands a newcomer needs are `make serve` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/pip --disable-pip-version-check
RUN    ?= .run
SOCKET ?= $(RUN)/whisperd.sock
HOST   ?= 127.0.0.1
PORT   ?= 5000
WYOMING_PORT ?= 10300
PYTEST_ARGS ?=

.PHONY: venv lock node-sdk serve test test-unit test-scale lint-imports soak bench clean distclean

# The stamp depends on every requirements file: a second run does nothing
# unless one of them changed.
$(VENV)/.stamp: requirements/*.txt requirements/*.lock setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# Everything but torch at the locked versions, each file checked against its hash.
	$(PIP) install -q --require-hashes -r requirements/dev.lock
	# torch from the one pin in constraints.txt (an unpinned torch pulls a CUDA build); nothing
	# in the lock needs it, so it comes only from here.
	$(PIP) install -q -c requirements/constraints.txt torch
	# openai-whisper without its triton dependency (GPU-only, ~1 GB): see README "Set-up".
	$(PIP) install -q --no-deps --require-hashes -r requirements/whisper.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

venv: $(VENV)/.stamp

# Refresh requirements/runtime.lock and dev.lock (hash-pinned) from the requirement files.
lock:
	requirements/lock.sh

# The official openai Node SDK, a second real client for tests/stack/test_node_sdk.py (skipped without npm).
NODE_SDK = tests/clients/node
$(NODE_SDK)/node_modules/.stamp: $(NODE_SDK)/package.json $(NODE_SDK)/package-lock.json
	cd $(NODE_SDK) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

node-sdk:
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(NODE_SDK)/node_modules/.stamp; \
	else echo "npm not found: tests/stack/test_node_sdk.py will be skipped (install nodejs and npm)"; fi

# Daemon + shim in the foreground on the embedded tiny.en; Ctrl-C stops both.
serve: venv
	@mkdir -p $(RUN)
	@echo "whisperd: socket $(SOCKET); OpenAI API on http://$(HOST):$(PORT)/v1; Wyoming on tcp://127.0.0.1:$(WYOMING_PORT) (Ctrl-C stops all)"
	@# Ctrl-C reaches the whole foreground group: each program drains on its own, and a TERM on
	@# top would count as a second signal ("stop now"). Only a TERM to make is forwarded.
	@trap 'wait $$d $$s $$w 2>/dev/null; exit 0' INT; \
	trap 'kill $$d $$s $$w 2>/dev/null; wait $$d $$s $$w 2>/dev/null; exit 0' TERM; \
	$(BIN)/whisperd --socket $(SOCKET) --cache-dir .cache --config /dev/null & d=$$!; \
	$(BIN)/whisperd-shim --socket $(SOCKET) --host $(HOST) --port $(PORT) --config /dev/null & s=$$!; \
	$(BIN)/whisperd-wyoming --socket $(SOCKET) --uri tcp://127.0.0.1:$(WYOMING_PORT) --config /dev/null & w=$$!; \
	wait $$d; rc=$$?; kill $$s $$w 2>/dev/null; wait $$s $$w 2>/dev/null; exit $$rc

# Everything but the soak: the walls, then unit, service and stack tests (docs/architecture.md).
test: venv node-sdk lint-imports
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Seconds, no model weights, no child processes: pure codecs, policy, formats, settings, protocol
# and the doctests of the pure modules (tests/unit/test_doctests.py).
test-unit: venv
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

# The import walls between the programs (setup.cfg [importlinter]).
lint-imports: venv
	$(BIN)/lint-imports

# The real HAProxy in front of three real hosts (tests/scale, docs/scale-out.md), a minute or two.
# Needs Debian's haproxy and nginx (apt-get install haproxy nginx-light); without them it fails.
test-scale: venv
	@command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || \
	    { echo "make test-scale needs haproxy: apt-get install haproxy nginx-light" >&2; exit 1; }
	@[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || \
	    { echo "make test-scale needs nginx (its config is checked): apt-get install nginx-light" >&2; exit 1; }
	$(BIN)/python -m pytest -q -m scale -o addopts= -s tests/scale $(PYTEST_ARGS)

soak: venv
	$(BIN)/python -m pytest -q -m slow -o addopts= $(PYTEST_ARGS)

bench: venv
	$(PIP) install -q -c requirements/constraints.txt -r requirements/bench.txt
	$(BIN)/python bench/run.py

clean:
	rm -rf $(RUN) .pytest_cache .hypothesis build dist *.egg-info

distclean: clean
	rm -rf $(VENV) .cache $(NODE_SDK)/node_modules

# ---- Debian package (packaging/, docs/debian.md) -------------------------------
# `make deb`: build dist/whisperd_<version>_amd64.deb (root: installs the Debian
# build tools when missing). `make test-deb`: boot a debootstrap'd bookworm with
# systemd-nspawn, install, transcribe over HTTP, purge (root; tree cached in
# /var/cache/whisperd-test).
.PHONY: deb test-deb
deb:
	packaging/build-deb.sh

# test-deb rebuilds first when there is no package yet or a packaged source is newer
# than it (testing a stale .deb would prove nothing about the tree).
test-deb:
	@deb=$$(ls dist/whisperd_*.deb 2>/dev/null | head -n1); \
	if [ -z "$$deb" ] || [ -n "$$(find whisperd shim whisperd_wyoming packaging setup.cfg pyproject.toml requirements \
	        -type f -not -path '*/__pycache__/*' -newer "$$deb" -print -quit)" ]; then \
	    echo "test-deb: building the package first (none yet, or sources newer than it)"; \
	    packaging/build-deb.sh; \
	fi
	packaging/test-deb.sh
# ---- end of Debian package block ----------------------------------------------
