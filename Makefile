# Two entry points (see README): `make rehearse` runs the main job, `make test` runs the whole test suite (in parallel,
# one worker per core: setup.cfg). `make test-quick` leaves out the tests marked slow, for a quick loop while working.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: rehearse test test-quick doctor venv clean

$(STAMP): setup.cfg pyproject.toml constraints-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints-dev.txt torch torchvision
	$(BIN)/python -m pip install --quiet -c constraints-dev.txt -e '.[dev,cmfd]'
	touch $(STAMP)

venv: $(STAMP)

rehearse: $(STAMP)
	$(BIN)/kaggle-kit rehearse

doctor: $(STAMP)
	$(BIN)/kaggle-kit doctor

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-quick: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info
