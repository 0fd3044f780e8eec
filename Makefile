# The two commands of the README:
#   make run    set up, build the C++ parts, execute every notebook in order (outputs written back)
#   make test   set up, build, run the unit tests and nbval over every notebook
# Both create and reuse a virtual environment in $(VENV).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
NBVAL_FLAGS := --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=1200

.PHONY: setup system-deps build run test clean help

help:
	@echo "make run    - set up, then execute every notebook in order (outputs written back)"
	@echo "make test   - set up, then run pytest and nbval over every notebook"
	@echo "make setup  - create $(VENV) and install requirements.txt + this package (editable)"
	@echo "make build  - build the cppimport module and the CMake program (cached)"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

system-deps:
	@bash scripts/install_system_deps.sh

build: setup system-deps
	$(PY) -m detr_deploy.cpp_build

run: build
	@for notebook in $(NOTEBOOKS); do \
		echo "== executing $$notebook"; \
		$(PY) -m jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=3600 "$$notebook" || exit 1; \
	done

test: build
	$(PY) -m pytest tests $(NOTEBOOKS) $(NBVAL_FLAGS)

clean:
	rm -rf build cpp/*.so cpp/.rendered.* cpp/*.lock .pytest_cache
