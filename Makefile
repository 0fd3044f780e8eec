# The two commands of the README:
#   make run    set up, build the C++ parts, execute every notebook in order (outputs written back)
#   make test   set up, lint, build, run the unit tests and nbval over every notebook
# Both create and reuse a virtual environment in $(VENV).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUNTIMES_STAMP := $(VENV)/.installed-runtimes
SCALE_STAMP := $(VENV)/.installed-scale
# Chapters in reading order: 01_, 02_, 02b_, 03_, ... (sort puts "02_" before "02b_")
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb notebooks/[0-9][0-9][a-z]_*.ipynb))
NBVAL_FLAGS := --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout=1200

.PHONY: setup setup-runtimes setup-scale triton-env system-deps build runtime model-repository model-repository-python run lint test benchmark benchmark-int8 bench-load readme clean help

help:
	@echo "make run    - set up, then execute every notebook in order (outputs written back)"
	@echo "make test   - set up, then lint, run pytest and nbval over every notebook"
	@echo "make lint   - ruff: lint the tree and check the Python files' formatting"
	@echo "make setup  - create $(VENV) and install requirements.txt + this package (editable)"
	@echo "make build  - build the cppimport module and the CMake program (cached)"
	@echo "make setup-runtimes - also install the optional ONNX Runtime / OpenVINO extras"
	@echo "make setup-scale    - also install the optional Ray extra (python -m detr_deploy.batch)"
	@echo "make runtime          - assemble the slim runtime folder build/runtime (module + libtorch libs + demo model)"
	@echo "make model-repository - write the Triton model repository for the demo model to build/model_repository"
	@echo "make model-repository-python - the same for Triton's Python backend (build/model_repository_python)"
	@echo "make triton-env       - the real model server's side environment build/triton-env (tests/test_model_server.py)"
	@echo "make bench-load       - 8 clients for 60 s against the embedded service on 127.0.0.1 (not in CI)"
	@echo "make benchmark-int8   - int8 vs float32: speed (DETR-R50, demo) and accuracy (demo); data/benchmarks/int8_*.json"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

# Optional baselines (ONNX Runtime, OpenVINO): the core install does not need them; the
# chapters and tests that compare runtimes do, so `run` and `test` install them.
$(RUNTIMES_STAMP): $(STAMP) $(wildcard requirements-runtimes.txt)
	@if [ -f requirements-runtimes.txt ]; then $(PY) -m pip install --quiet -r requirements-runtimes.txt; fi
	@touch $(RUNTIMES_STAMP)

setup-runtimes: $(RUNTIMES_STAMP)

# Optional: Ray for batch detection over many images (python -m detr_deploy.batch); tests need it.
$(SCALE_STAMP): $(STAMP) requirements-scale.txt
	$(PY) -m pip install --quiet -r requirements-scale.txt
	@touch $(SCALE_STAMP)

setup-scale: $(SCALE_STAMP)

system-deps:
	@bash scripts/install_system_deps.sh

build: setup system-deps
	$(PY) -m detr_deploy.native.cpp_build

runtime: build
	$(PY) -m detr_deploy.native.runtime_folder --out build/runtime --model data/models/demo.pt

model-repository: setup
	$(PY) -m detr_deploy.export.model_repository --out build/model_repository --model data/models/demo.pt

model-repository-python: build
	$(PY) -m detr_deploy.export.model_repository --out build/model_repository_python --model data/models/demo.pt \
		--backend python

# The real model server for tests/test_model_server.py (Triton in the nvidia-pytriton wheel, numpy<2),
# apart from $(VENV); without it those tests are skipped.
triton-env: setup
	@bash scripts/triton_env.sh

# The full measurement of chapter 04 (the committed run took 12 minutes on 2 cores); writes data/benchmarks/.
benchmark: build setup-runtimes
	$(PY) -m detr_deploy.bench --out data/benchmarks

# int8 against float32 (chapter 02c): builds the AOTInductor, OpenVINO and ONNX Runtime artefacts of
# DETR-R50 and the demo model in both precisions (cached under build/quantize; compiling takes tens
# of minutes on 2 cores the first time), times them and scores the demo model's. OMP_WAIT_POLICY=PASSIVE:
# on a shared machine libtorch's spinning OpenMP threads otherwise inflate torch's times.
benchmark-int8: build setup-runtimes
	OMP_WAIT_POLICY=PASSIVE $(PY) -m detr_deploy.quantize speed --out data/benchmarks/int8_speed.json
	OMP_WAIT_POLICY=PASSIVE $(PY) -m detr_deploy.quantize accuracy --out data/benchmarks/int8_accuracy.json

# A bounded load run: 8 clients POST the sample cards to the embedded service (demo model) for 60 s;
# prints requests/s, latency percentiles, errors and the server's peak RSS. Not part of `make test`.
bench-load: build
	$(PY) scripts/bench_load.py --clients 8 --duration 60

# The README's headline numbers, from data/benchmarks/ (tests check they match).
readme: setup
	$(PY) -m detr_deploy.bench.readme
	$(PY) -m detr_deploy.quantize readme

run: build setup-runtimes
	@for notebook in $(NOTEBOOKS); do \
		echo "== executing $$notebook"; \
		$(PY) -m jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=3600 "$$notebook" || exit 1; \
	done

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint build setup-runtimes setup-scale triton-env
	$(PY) -m pytest tests $(NOTEBOOKS) $(NBVAL_FLAGS)

clean:
	rm -rf build cpp/*.so cpp/.rendered.* cpp/*.lock .pytest_cache
