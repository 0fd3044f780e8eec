"""Run a command as this small process's child and print its wall times and peak memory as JSON.

    python -m detr_deploy.bench.launcher COMMAND [ARGS...]

The indirection matters: Linux keeps a process's peak RSS across fork + exec, so a child
forked straight from the (large) benchmark process would report the benchmark's peak, not
its own; forked from this launcher it reports its own (the launcher's ~10 MB floor is far
below any runtime's). Keep this module's imports to the standard library for that reason.
"""

import json
import resource
import subprocess
import sys
import time


def main(command) -> int:
    spawned = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate()
    ended = time.time()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        json.dumps(
            {
                "spawned": spawned,
                "ended": ended,
                "code": process.returncode,
                "max_rss_kib": usage.ru_maxrss,
                "stdout": out.decode(errors="replace"),
                "stderr": err.decode(errors="replace")[-2000:],
            }
        )
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0] + "\n\nusage: python -m detr_deploy.bench.launcher COMMAND [ARGS...]")
        sys.exit(0 if len(sys.argv) > 1 else 2)
    try:
        sys.exit(main(sys.argv[1:]))
    except OSError as error:  # the command cannot be started
        print(f"error: cannot run {sys.argv[1]}: {error.strerror}", file=sys.stderr)
        sys.exit(1)
