# Sourced by gpu_train.sh and gpu_finetune.sh: a log of the whole script, and trainings that run side
# by side on one GPU, each with its command and output in its own folder.

start_log() {  # OUT: everything the script prints also goes to OUT/run.log; stamps count from here
  mkdir -p "$1"
  exec > >(tee -a "$1/run.log") 2>&1
  export PYTHONUNBUFFERED=1
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}  # the trainings share the CPUs; their work is on the GPU
  T0=$(date +%s)
}

stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }

declare -A RUN_PIDS
launch_run() {  # RUNS_DIR NAME COMMAND...: start one training in the background
  mkdir -p "$1/$2"
  echo "${*:3}" > "$1/$2/command.txt"
  "${@:3}" > "$1/$2/stdout.txt" 2>&1 &
  RUN_PIDS[$2]=$!
}

wait_runs() {  # RUNS_DIR NAME...: wait for each run; a failed one's last lines are shown
  local dir=$1 name
  shift
  for name in "$@"; do
    if wait "${RUN_PIDS[$name]}"; then
      tail -n 2 "$dir/$name/stdout.txt"
    else
      stamp "run $name failed:"
      tail -n 20 "$dir/$name/stdout.txt"
    fi
  done
}
