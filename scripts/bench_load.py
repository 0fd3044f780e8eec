"""A bounded load run against the embedded service: N clients POST the sample cards for D seconds.

    .venv/bin/python scripts/bench_load.py [--clients 8] [--duration 60] [--model data/models/demo.pt]
    make bench-load                                  # the same, 8 clients for 60 s (not run by CI)

It starts ``python -m detr_deploy.serve`` (the service's real uvicorn server, the C++ model) on
127.0.0.1 with a port the OS picks, waits for ``/health``, then runs ``--clients`` threads, each on
one keep-alive connection, sending the images of ``--images`` in turn until ``--duration`` seconds have
passed (a client that gets 503 waits its ``Retry-After``, as a polite client does). It prints requests
per second, latency percentiles of the answered requests, every status other than 200 and every
connection error, and the server's peak resident memory (VmHWM); ``--json FILE`` writes the same.
The server is stopped with SIGTERM at the end, whatever happens. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the only address this script talks to
MAX_DURATION_S = 600
MAX_CLIENTS = 64
CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


def percentile(sorted_values: List[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def memory_kib(pid: int) -> Dict[str, int]:
    """VmRSS and VmHWM (peak) of ``pid`` in KiB, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def load_images(folder: Path, limit: int) -> List[tuple]:
    files = sorted(path for path in folder.iterdir() if path.suffix.lower() in CONTENT_TYPES)[:limit]
    if not files:
        raise SystemExit(f"no .jpg/.png images in {folder}")
    return [(path.name, path.read_bytes(), CONTENT_TYPES[path.suffix.lower()]) for path in files]


def start_service(model: Path, env_overrides: Dict[str, str], log_folder: Path) -> tuple:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DETR_") and k != "PORT"}
    environment.update(DETR_LOG_LEVEL="WARNING", **env_overrides)
    stdout_path, stderr_path = log_folder / "service.out", log_folder / "service.err"
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "detr_deploy.serve", "--model", str(model), "--host", HOST, "--port", "0"],
            stdout=out,
            stderr=err,
            env=environment,
            cwd=REPO_ROOT,
        )
    deadline = time.monotonic() + 300
    while True:
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", stdout_path.read_text())
        if match:
            return process, int(match.group(1))
        if process.poll() is not None or time.monotonic() > deadline:
            stop_service(process)
            raise SystemExit(f"the service did not start:\n{stdout_path.read_text()}{stderr_path.read_text()}")
        time.sleep(0.1)


def stop_service(process: subprocess.Popen) -> Optional[int]:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
    return process.returncode


class Client(threading.Thread):
    """One keep-alive connection sending the images in turn until ``deadline`` (time.monotonic)."""

    def __init__(self, index: int, port: int, images: List[tuple], deadline: float, timeout: float):
        super().__init__(name=f"client-{index}", daemon=True)
        self.index, self.port, self.images, self.deadline, self.timeout = index, port, images, deadline, timeout
        self.latencies_s: List[float] = []  # of 200 answers
        self.statuses: Counter = Counter()
        self.errors: Counter = Counter()  # connection-level failures, by exception type
        self.waited_s = 0.0  # Retry-After sleeps

    def run(self) -> None:
        connection = None
        turn = self.index  # clients start at different images
        while time.monotonic() < self.deadline:
            name, body, content_type = self.images[turn % len(self.images)]
            turn += 1
            if connection is None:
                connection = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            started = time.monotonic()
            try:
                connection.request("POST", "/detect", body=body, headers={"Content-Type": content_type})
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as error:
                self.errors[type(error).__name__] += 1
                connection.close()
                connection = None
                continue
            elapsed = time.monotonic() - started
            self.statuses[response.status] += 1
            if response.status == 200:
                json.loads(payload)  # a whole JSON answer, or this client fails loudly
                self.latencies_s.append(elapsed)
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
            if response.status == 503:
                pause = min(float(response.getheader("Retry-After", "1")), max(0.0, self.deadline - time.monotonic()))
                self.waited_s += pause
                time.sleep(pause)
        if connection is not None:
            connection.close()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "data" / "models" / "demo.pt")
    parser.add_argument("--images", type=Path, default=REPO_ROOT / "data" / "samples" / "images")
    parser.add_argument("--max-images", type=int, default=20, help="images sent in turn (default 20)")
    parser.add_argument("--clients", type=int, default=8, help=f"concurrent clients, 1..{MAX_CLIENTS} (default 8)")
    parser.add_argument("--duration", type=float, default=60.0, help=f"seconds, at most {MAX_DURATION_S} (default 60)")
    parser.add_argument("--timeout", type=float, default=120.0, help="client timeout per request, seconds")
    parser.add_argument("--num-threads", type=int, help="DETR_NUM_THREADS (default: the service's)")
    parser.add_argument("--max-concurrency", type=int, help="DETR_MAX_CONCURRENCY (default: the service's)")
    parser.add_argument("--max-queue", type=int, help="DETR_MAX_QUEUE (default: the service's)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be in 1..{MAX_CLIENTS}")
    if not 0 < args.duration <= MAX_DURATION_S:
        parser.error(f"--duration must be in (0, {MAX_DURATION_S}] seconds")
    if not args.model.is_file():
        parser.error(f"model not found: {args.model}")

    images = load_images(args.images, args.max_images)
    overrides = {
        name: str(value)
        for name, value in (
            ("DETR_NUM_THREADS", args.num_threads),
            ("DETR_MAX_CONCURRENCY", args.max_concurrency),
            ("DETR_MAX_QUEUE", args.max_queue),
        )
        if value is not None
    }
    with tempfile.TemporaryDirectory(prefix="bench_load_") as folder:
        process, port = start_service(args.model, overrides, Path(folder))
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=60)
            connection.request("GET", "/health")
            health = json.loads(connection.getresponse().read())
            connection.close()
            if health.get("status") != "ok":
                raise SystemExit(f"the service is not healthy: {health}")
            rss_before = memory_kib(process.pid)
            print(
                f"service pid {process.pid} on {HOST}:{port}: model {health.get('model')} "
                f"(sha256 {str(health.get('sha256'))[:12]}..., verified {health.get('verified')}), "
                f"{health['pool']['workers']} workers + {health['pool']['queue']} queue places, "
                f"{health.get('threads')} libtorch threads; {len(images)} images, {args.clients} clients, "
                f"{args.duration:g} s",
                flush=True,
            )
            started = time.monotonic()
            clients = [Client(i, port, images, started + args.duration, args.timeout) for i in range(args.clients)]
            for client in clients:
                client.start()
            peak_rss_sampled = rss_before["VmRSS"]
            while any(client.is_alive() for client in clients):
                peak_rss_sampled = max(peak_rss_sampled, memory_kib(process.pid)["VmRSS"])
                time.sleep(0.25)
            wall_s = time.monotonic() - started
            memory = memory_kib(process.pid)
        finally:
            exit_code = stop_service(process)

    latencies = sorted(latency for client in clients for latency in client.latencies_s)
    statuses = sum((client.statuses for client in clients), Counter())
    errors = sum((client.errors for client in clients), Counter())
    answered = sum(statuses.values())
    report = {
        "clients": args.clients,
        "duration_s": round(wall_s, 2),
        "cpus": len(os.sched_getaffinity(0)),
        "requests": answered,
        "ok": statuses.get(200, 0),
        "requests_per_s": round(answered / wall_s, 2),
        "ok_per_s": round(statuses.get(200, 0) / wall_s, 2),
        "latency_ms": {
            "p50": round(1e3 * percentile(latencies, 0.50), 1),
            "p90": round(1e3 * percentile(latencies, 0.90), 1),
            "p99": round(1e3 * percentile(latencies, 0.99), 1),
            "max": round(1e3 * latencies[-1], 1) if latencies else None,
            "mean": round(1e3 * statistics.fmean(latencies), 1) if latencies else None,
        },
        "other_statuses": {str(status): count for status, count in sorted(statuses.items()) if status != 200},
        "connection_errors": dict(errors),
        "retry_after_waited_s": round(sum(client.waited_s for client in clients), 1),
        "server_rss_mib": {
            "before": round(rss_before["VmRSS"] / 1024, 1),
            "peak": round(memory["VmHWM"] / 1024, 1),  # the kernel's high-water mark, start-up included
            "peak_during_run": round(peak_rss_sampled / 1024, 1),  # sampled every 0.25 s
            "end": round(memory["VmRSS"] / 1024, 1),
        },
        "server_exit": exit_code,
    }
    latency = report["latency_ms"]
    print(
        f"{report['requests']} requests in {report['duration_s']} s: {report['requests_per_s']} requests/s, "
        f"{report['ok_per_s']} ok/s; latency of the 200s p50 {latency['p50']} ms, "
        f"p90 {latency['p90']} ms, p99 {latency['p99']} ms, max {latency['max']} ms"
    )
    print(
        f"other statuses {report['other_statuses'] or 'none'}, "
        f"connection errors {report['connection_errors'] or 'none'}, "
        f"Retry-After waited {report['retry_after_waited_s']} s"
    )
    rss = report["server_rss_mib"]
    print(
        f"server RSS: {rss['before']} MiB before, peak {rss['peak']} MiB (VmHWM), {rss['end']} MiB at the end; "
        f"exit status {exit_code}"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    failed = bool(errors) or exit_code != 0 or statuses.get(200, 0) == 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
