#!/usr/bin/env bash
# Run the tritonserver of build/triton-env (made by scripts/triton_env.sh); the arguments go to
# tritonserver:
#
#   bash scripts/tritonserver.sh --model-repository=build/model_repository_python [--http-port=8000 ...]
#
# Started outside pytriton, the server needs what pytriton would set up for it:
# * the Python backend folder holding the stub for the environment's Python (--backend-directory);
# * the environment's bin/ first on PATH: the stub's embedded interpreter finds its packages
#   (numpy 1) through the python there; it ignores PYTHONPATH;
# * that interpreter's libpython first on LD_LIBRARY_PATH: the stub links libpython3.X.so.1.0
#   and otherwise loads the system's, another build than the standard library it then runs;
# * the wheel's bundled libraries (nvidia_pytriton.libs), which the stub links too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="${TRITON_ENV:-$ROOT/build/triton-env}"
if [[ ! -f "$ENV_DIR/.installed" ]]; then
    echo "error: no Triton environment in $ENV_DIR: run bash scripts/triton_env.sh" >&2
    exit 2
fi
PROBE='import pathlib, sysconfig, pytriton; print(sysconfig.get_config_var("LIBDIR")); print(pathlib.Path(pytriton.__file__).parent)'
{ read -r LIBDIR; read -r PACKAGE; } < <("$ENV_DIR/bin/python" -c "$PROBE")

export PATH="$ENV_DIR/bin:$PATH"
export LD_LIBRARY_PATH="$LIBDIR:$(dirname "$PACKAGE")/nvidia_pytriton.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV
exec "$PACKAGE/tritonserver/bin/tritonserver" --backend-directory="$ENV_DIR/backends" "$@"
