# Two entry points a new user needs (see README):
#   make demo   install, then run the main job on the embedded default data
#   make test   install (with the test extra), then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip

.PHONY: install install-test demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(BIN)/python
	$(PIP) install -q -c constraints.txt -e .

install-test: $(BIN)/python
	$(PIP) install -q -c constraints.txt -e ".[test]"

demo: install
	$(BIN)/amser-sb demo

test: install-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n auto --dist loadfile --durations=15 tests amser_sb --doctest-modules

clean:
	rm -rf $(VENV) build *.egg-info demo_output
