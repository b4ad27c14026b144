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

# An editable install does not byte-compile the project's own modules, and
# where PYTHONDONTWRITEBYTECODE is set no process would ever cache them:
# compile them once here, or every test worker and subprocess recompiles.
install: $(BIN)/python
	$(PIP) install -q -c constraints.txt -e .
	$(BIN)/python -m compileall -q amser_sb recipes

install-test: $(BIN)/python
	$(PIP) install -q -c constraints.txt -e ".[test]"
	$(BIN)/python -m compileall -q amser_sb recipes tests benchmarks

demo: install
	$(BIN)/amser-sb demo

test: install-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n auto --dist loadfile --durations=15 tests amser_sb --doctest-modules

clean:
	rm -rf $(VENV) build *.egg-info demo_output
