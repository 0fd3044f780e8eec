#!/usr/bin/env bash
# Create build/triton-env: a virtual environment holding the real Triton Inference Server (the
# tritonserver of the nvidia-pytriton wheel) for tests/test_model_server.py and for running the
# model server by hand (scripts/tritonserver.sh). Never touches .venv. Cached: a stamp file records
# the requirements' hash, so a second run with unchanged requirements-triton.txt does nothing.
#
#   bash scripts/triton_env.sh            # or: make triton-env
#
# The environment is made from the project interpreter's base Python (same minor version), so the
# Python-backend stub can import the project's detr_cpp module. It also assembles backends/python/,
# the backend folder tritonserver is started with: the backend library, its utilities and the
# stub built for this Python version (the wheel ships one stub per version and copies the right
# one at run time; tritonserver started directly needs it in place).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="${TRITON_ENV:-$ROOT/build/triton-env}"
REQUIREMENTS="$ROOT/requirements-triton.txt"
PROJECT_PYTHON="${PROJECT_PYTHON:-$ROOT/.venv/bin/python}"
STAMP="$ENV_DIR/.installed"

wanted="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$wanted" && -x "$ENV_DIR/backends/python/triton_python_backend_stub" ]]; then
    echo "$ENV_DIR is up to date"
    exit 0
fi

if [[ -x "$PROJECT_PYTHON" ]]; then
    # the base interpreter, not the project venv's wrapper: the side venv must not see .venv's packages
    BASE_PYTHON="$("$PROJECT_PYTHON" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')"
else
    BASE_PYTHON="${PYTHON:-python3}"
fi
echo "creating $ENV_DIR with $BASE_PYTHON"
rm -f "$STAMP"
[[ -x "$ENV_DIR/bin/python" ]] || "$BASE_PYTHON" -m venv "$ENV_DIR"
"$ENV_DIR/bin/python" -m pip install --quiet --upgrade pip
"$ENV_DIR/bin/python" -m pip install --quiet -r "$REQUIREMENTS"

PACKAGE="$("$ENV_DIR/bin/python" -c 'import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).parent)')"
VERSION="$("$ENV_DIR/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
STUB="$PACKAGE/tritonserver/python_backend_stubs/$VERSION/triton_python_backend_stub"
if [[ ! -f "$STUB" ]]; then
    echo "error: nvidia-pytriton has no Python-backend stub for Python $VERSION ($STUB)" >&2
    exit 1
fi
rm -rf "$ENV_DIR/backends"
mkdir -p "$ENV_DIR/backends/python"
cp "$PACKAGE/tritonserver/backends/python/libtriton_python.so" \
    "$PACKAGE/tritonserver/backends/python/triton_python_backend_utils.py" "$STUB" "$ENV_DIR/backends/python/"
chmod +x "$ENV_DIR/backends/python/triton_python_backend_stub"

if ldd "$PACKAGE/tritonserver/bin/tritonserver" | grep "not found" >&2; then
    echo "warning: tritonserver lacks the system libraries above" >&2
fi
echo "$wanted" > "$STAMP"
echo "ready: bash scripts/tritonserver.sh --model-repository=DIR runs $PACKAGE/tritonserver/bin/tritonserver"
