"""Soak test of the embedding service under gunicorn: workers' memory under a steady load, and the requests
lost when a worker is killed.

    python bench/serve_soak.py [--model PATH] [--duration 60] [--workers 2]

Built on bench/serve_load.py: the same gunicorn configuration, the same wrk driver and, without --model,
the same synthetic 100,000 x 100 model. wrk drives GET /similar and GET /context-probs (random vocabulary
words, interleaved) at 32 connections for --duration seconds in each of two phases, after a warm-up that
maps the pages those requests read:
1. steady: each worker's RSS and PSS (/proc/PID/smaps_rollup) at the start and at the end of the load;
   target: growth under 5 %.
2. the same load with one worker killed (SIGKILL) halfway; target: under 0.5 % of requests failed.
Failed requests are wrk's connect, read, write and timeout errors plus answers with an error status; their
share is taken of the requests wrk completed (connection errors are not among those, so it is an upper
bound of the share of requests sent).
"""
from __future__ import annotations

import argparse
import glob
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from serve_load import ROOT, STEADY_TABLES, Server, run_in_temporary_folder, synthetic_model, wrk, workload
from trainer import artifact

CONCURRENCY = 32
GROWTH_TARGET, FAILED_TARGET = 5.0, 0.5  # percent


def worker_pids(master: int) -> list[int]:
    """The gunicorn master's child processes: its workers."""
    return sorted(int(pid) for name in glob.glob(f"/proc/{master}/task/*/children")
                  for pid in Path(name).read_text().split())


def memory(pid: int) -> dict[str, int | None]:
    """{"rss": bytes, "pss": bytes or None where the kernel has no smaps_rollup}."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except FileNotFoundError:
        lines = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:")]
    fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in lines if line.endswith(" kB")}
    return {"rss": fields.get("Rss", fields.get("VmRSS")), "pss": fields.get("Pss")}


def run(args, tmp: Path) -> None:
    model_dir = Path(args.model) if args.model else synthetic_model(tmp, 100_000, 100)
    model = artifact.load(model_dir)
    loads = workload(list(model.words), model.dim)
    items = [item for pair in zip(loads["GET /similar word (exact)"], loads["GET /context-probs"]) for item in pair]
    label = "GET /similar + GET /context-probs"
    env = {"MODEL_DIR": str(model_dir), "SKIPGRAM_CACHE_DIR": str(args.cache_dir),
           "WEB_CONCURRENCY": str(args.workers), **STEADY_TABLES}
    print(f"model: {model_dir} ({model.vocab_size} words x {model.dim}); {args.workers} workers; wrk: "
          f"{CONCURRENCY} connections, {label}, {args.duration} s per phase after a {args.warmup} s warm-up; "
          f"load average before: {os.getloadavg()[0]:.1f}\n", flush=True)
    server = Server("service:create_app()", env, tmp / "gunicorn.log")
    try:
        wrk(server.base, label, items, CONCURRENCY, args.warmup, tmp)
        workers = worker_pids(server.process.pid)
        start = {pid: memory(pid) for pid in workers}
        steady = wrk(server.base, label, items, CONCURRENCY, args.duration, tmp)
        end = {pid: memory(pid) for pid in workers}

        with ThreadPoolExecutor(1) as pool:
            load = pool.submit(wrk, server.base, label, items, CONCURRENCY, args.duration, tmp)
            time.sleep(args.duration / 2)
            victim = workers[0]
            os.kill(victim, signal.SIGKILL)
            killed = load.result()
        after = worker_pids(server.process.pid)
    finally:
        server.stop()

    print("| phase | requests | failed | failed % | req/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for phase, r in (("steady", steady), (f"one worker killed at {args.duration / 2:g} s", killed)):
        print(f"| {phase} | {r['requests']} | {r['errors']} | {100 * r['errors'] / max(r['requests'], 1):.3f} | "
              f"{r['rps']:.0f} | {r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} |")
    print(f"\nkilled worker {victim}; workers afterwards: {', '.join(map(str, after))}"
          f" ({'replaced' if len(after) == args.workers and victim not in after else 'NOT replaced'})")

    print("\n| worker | RSS start MiB | RSS end MiB | RSS growth % | PSS start MiB | PSS end MiB | PSS growth % |")
    print("|---|---|---|---|---|---|---|")
    for pid in workers:
        cells = []
        for kind in ("rss", "pss"):
            before, now = start[pid][kind], end[pid][kind]
            cells += ([f"{before / 2**20:.1f}", f"{now / 2**20:.1f}", f"{100 * (now - before) / before:+.2f}"]
                      if before and now else ["n/a"] * 3)
        print(f"| {pid} | " + " | ".join(cells) + " |")
    print(f"\ntargets: memory growth under {GROWTH_TARGET:g} % over the steady phase; failed requests with a "
          f"worker killed under {FAILED_TARGET:g} %; load average after: {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder (default: serve_load.py's synthetic one, in a temporary "
                                        "folder)")
    parser.add_argument("--duration", type=int, default=60,
                        help="seconds of load per phase (whole seconds, as wrk takes)")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of load before the first memory reading")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY)")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "serve_load",
                        help="the service's cache of derived data, shared with serve_load.py")
    args = parser.parse_args(argv)
    return run_in_temporary_folder(run, args, "serve_soak-")


if __name__ == "__main__":
    sys.exit(main())
