"""Two replicas of the service behind haproxy on loopback: the requests lost when one dies and comes back,
and when both switch to a new model with HUP.

    python bench/replicas.py [--words 20000] [--dim 100] [--duration 10] [--concurrency 8]

Built on bench/serve_load.py (gunicorn servers with the service's configuration, the synthetic model, the
wrk driver) and bench/serve_soak.py (a master's workers). Two gunicorn instances of the service (--workers
each) serve one MODEL_DIR folder with one cache of derived data, as two replicas on one host would. haproxy
(Debian package `haproxy`) runs in front of them in the foreground: round robin, health checks on /readyz
every 500 ms (down after 2 failures, up after 2 successes), and a request whose connection to a server fails
or which a server drops unanswered is sent again, to the other server (`retry-on`, `option redispatch 1`).
wrk drives GET /similar?word= over random vocabulary words through haproxy, after a --warmup, in phases of
--duration seconds (prepare: --prepare-duration):
1. steady;
2. kill: at --kill-at s one instance's master and its workers are SIGKILLed together (a crashed machine,
   not a graceful stop); at --restart-at s it is started again on the same port and waited for until its
   /readyz answers and haproxy counts it up again; target: under 0.1 % of requests failed;
3. prepare: at --save-at s a new model is saved at MODEL_DIR (artifact.save: atomic) and its derived data
   prepared (`python -m service.precompute`, as the README's procedure advises before the HUP) while both
   instances serve the previous one; target: no request failed;
4. switch: at --switch-at s a rolling HUP, as the README's procedure for replicas says: the first master gets
   HUP and its /readyz is polled until it reports the new digest, then the second likewise (so one instance
   answers at every moment); target: no request failed.
Failed requests are wrk's socket errors (connect, read, write, timeout) plus its answers with an error
status ("Socket errors" and "Non-2xx or 3xx responses"), as a share of the requests wrk completed. wrk's
percentiles include its correction for coordinated omission (a request that stalled for T adds samples
spread over T), so a few stalled requests raise p99; haproxy's log of the same requests gives how many it
retried and the slowest (ms, as haproxy timed it), and lists those it could not serve.
"""
from __future__ import annotations

import argparse
import csv
import glob
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import requests

import serve_load
from serve_load import ROOT, Server, free_port, run_in_temporary_folder, synthetic_model, workload, wrk
from serve_soak import worker_pids
from trainer import artifact

APP, LABEL = "service:create_app()", "GET /similar word (exact)"
CLIENT_ENDED = "Cc"  # termination states of requests that wrk itself ended (at the end of a phase)
KILL_TARGET, SWITCH_TARGET = 0.1, 0.0  # percent of requests failed

# Every request is logged as "REQ server status total-ms termination-state retries" (a "+" before the
# retries: sent to another server). `timeout connect` is also the pause before a retry on the same server,
# or when just one server is up: a request that a dead server took when the health checks had not yet
# marked it down waits that long before going to the other one (haproxy's default is 1 s; a loopback or LAN
# connection is made in well under a millisecond). `timeout server` is below wrk's 5 s, so that an answer
# a server never sends is retried in time.
HAPROXY_CONFIG = """\
global
    maxconn 1024
    log stderr format raw local0 info
defaults
    mode http
    log global
    timeout connect 200ms
    timeout client 10s
    timeout server 3s
    timeout http-request 5s
    timeout http-keep-alive 10s
    timeout queue 3s
    timeout check 1s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend replicas
    bind 127.0.0.1:{port}
    option dontlognull
    log-format "REQ %s %ST %Ta %tsc %rc"
    default_backend service
backend service
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 2
{servers}
listen stats
    bind 127.0.0.1:{stats_port}
    no log
    stats enable
    stats uri /stats
"""


class Haproxy:
    """haproxy in the foreground before the servers {name: port}, with its statistics page."""

    def __init__(self, servers: dict[str, int], folder: Path):
        self.port, self.stats_port = free_port(), free_port()
        self.base, self.log = f"http://127.0.0.1:{self.port}", folder / "haproxy.log"
        lines = "\n".join(f"    server {name} 127.0.0.1:{port}" for name, port in servers.items())
        config = folder / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(port=self.port, stats_port=self.stats_port, servers=lines))
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=out, stderr=out)

    def stats(self) -> dict[str, dict]:
        """The backend's rows of the statistics CSV, by server name (and BACKEND for the whole)."""
        text = requests.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=5).text
        return {row["svname"]: row for row in csv.DictReader(io.StringIO(text.removeprefix("# ")))
                if row["pxname"] == "service"}

    def up(self, *names: str) -> bool:
        try:
            rows = self.stats()
        except requests.ConnectionError:
            return False
        return all(rows[name]["status"] == "UP" for name in names)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def start(env: dict, log: Path, port: int | None = None) -> Server:
    """An instance of the service; on `port` (a restart) instead of a free port when given."""
    if port is None:
        return Server(APP, env, log)
    with mock.patch.object(serve_load, "free_port", lambda: port):  # Server takes no port of its own
        return Server(APP, env, log)


def kill(server: Server) -> list[int]:
    """SIGKILL a gunicorn master and its workers together; returns the workers' ids."""
    workers = worker_pids(server.process.pid)
    for pid in [server.process.pid, *workers]:  # the master first: it would replace killed workers
        os.kill(pid, signal.SIGKILL)
    server.process.wait()
    # The master's on_exit never ran: remove its workers' metrics folder (the one holding their files).
    for base in {"/dev/shm", tempfile.gettempdir()}:
        for name in (name for pid in workers for name in glob.glob(f"{base}/skipgram-metrics-*/*_{pid}.db")):
            shutil.rmtree(Path(name).parent, ignore_errors=True)
    return workers


def served_digest(server: Server) -> str | None:
    """The digest a ready instance serves, asked of it directly; None while it is not ready."""
    try:
        answer = requests.get(server.base + "/readyz", timeout=2)
    except requests.RequestException:
        return None
    return answer.json()["digest"] if answer.status_code == 200 else None


def wait_for(condition, what: str, limit: float = 120) -> float:
    """Seconds until condition() holds, polled every 0.1 s; stops the bench after `limit`."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > limit:
            raise SystemExit(f"{what}: not within {limit:g} s")
        time.sleep(0.1)
    return time.perf_counter() - started


# ------------------------------------------------------------------------------------------ phases

def phase(proxy: Haproxy, items: list, seconds: int, args, tmp: Path, action=None) -> dict:
    """wrk through haproxy for `seconds` while action() (from the start, returning a note) runs beside it;
    wrk's result with what haproxy's log says of the same requests."""
    offset = proxy.log.stat().st_size
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(wrk, proxy.base, LABEL, items, args.concurrency, seconds, tmp)
        note = action() if action else ""
        result = load.result()
    with open(proxy.log, "rb") as log:
        log.seek(offset)
        logged = [line.split()[1:] for line in log.read().decode(errors="replace").splitlines()
                  if line.startswith("REQ ")]  # [server, status, total ms, termination state, retries]
    return {**result, "note": note, "retried": sum(fields[4] != "0" for fields in logged),
            "slowest": max((int(fields[2]) for fields in logged), default=0),
            "unserved": [" ".join(fields) for fields in logged
                         if int(fields[1]) >= 500 or fields[3][0] not in "-" + CLIENT_ENDED]}


def kill_and_restart(servers: dict[str, Server], proxy: Haproxy, env: dict, log: Path, args) -> str:
    time.sleep(args.kill_at)
    victim = servers["a"]
    workers = kill(victim)
    time.sleep(args.restart_at - args.kill_at)
    servers["a"] = start(env, log, victim.port)
    ready = servers["a"].startup + wait_for(lambda: served_digest(servers["a"]) is not None, "restarted instance")
    up = ready + wait_for(lambda: proxy.up("a"), "restarted instance up in haproxy")
    return (f"kill: instance a (master {victim.process.pid}, workers {', '.join(map(str, workers))}) SIGKILLed at "
            f"{args.kill_at:g} s, started again at {args.restart_at:g} s on port {victim.port}: ready in "
            f"{ready:.1f} s, up in haproxy after {up:.1f} s")


def save_and_prepare(env: dict, model_dir: Path, tmp: Path, args) -> str:
    time.sleep(args.save_at)
    started = time.perf_counter()
    if synthetic_model(tmp, args.words, args.dim, seed=1) != model_dir:
        raise SystemExit("the new model was not saved at MODEL_DIR")
    saved = time.perf_counter() - started
    precompute = subprocess.run([sys.executable, "-m", "service.precompute"], cwd=ROOT, env={**os.environ, **env},
                                capture_output=True, text=True)
    if precompute.returncode != 0:
        raise SystemExit(f"preparing the new model failed: {precompute.stderr.strip()[-500:]}")
    done = args.save_at + time.perf_counter() - started
    late = f" (the load ended at {args.prepare_duration} s)" if done > args.prepare_duration else ""
    return (f"prepare: a new model saved at MODEL_DIR from {args.save_at:g} s in {saved:.1f} s, its derived data "
            f"prepared by {done:.1f} s{late}, while both instances served the previous one")


def switch(servers: dict[str, Server], model_dir: Path, args) -> str:
    time.sleep(args.switch_at)
    old, new = served_digest(servers["a"]), artifact.read_digest(model_dir)
    waited = []
    for name, server in servers.items():  # one at a time: the other instance answers meanwhile
        os.kill(server.process.pid, signal.SIGHUP)
        waited.append(wait_for(lambda: served_digest(server) == new, f"the switch of instance {name}"))
    return (f"switch: rolling HUP from {args.switch_at:g} s; each instance served contents {new} (before: {old}) "
            f"{waited[0]:.1f} s and {waited[1]:.1f} s after its HUP")


# ------------------------------------------------------------------------------------------ report

def run(args, tmp: Path) -> None:
    model_dir = synthetic_model(tmp, args.words, args.dim)
    model = artifact.load(model_dir)
    items = workload(list(model.words), model.dim)[LABEL]
    env = {"MODEL_DIR": str(model_dir), "SKIPGRAM_CACHE_DIR": str(tmp / "cache"),
           "WEB_CONCURRENCY": str(args.workers)}
    log = tmp / "gunicorn.log"
    version = " ".join(subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.split()[:3])
    print(f"model: synthetic {model.vocab_size} words x {model.dim}; 2 instances x {args.workers} workers behind "
          f"{version}; wrk: {args.concurrency} connections, {LABEL}, phases of {args.duration} s (prepare: "
          f"{args.prepare_duration} s); "
          f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    servers: dict[str, Server] = {}
    proxy = None
    try:
        servers["a"] = start(env, log)  # prepares the derived data; the second instance finds it ready
        servers["b"] = start(env, log)
        proxy = Haproxy({name: server.port for name, server in servers.items()}, tmp)
        wait_for(lambda: proxy.up("a", "b"), "haproxy with both instances up", limit=30)
        wrk(proxy.base, LABEL, items, args.concurrency, args.warmup, tmp)  # maps the pages the load reads
        rows = {"steady": phase(proxy, items, args.duration, args, tmp)}
        rows["kill"] = phase(proxy, items, args.duration, args, tmp,
                             lambda: kill_and_restart(servers, proxy, env, log, args))
        wait_for(lambda: proxy.up("a", "b"), "both instances up before the switch", limit=30)
        rows["prepare"] = phase(proxy, items, args.prepare_duration, args, tmp,
                                lambda: save_and_prepare(env, model_dir, tmp, args))
        rows["switch"] = phase(proxy, items, args.duration, args, tmp, lambda: switch(servers, model_dir, args))
    finally:
        if proxy:  # first, so that it does not see the instances go
            proxy.stop()
        for server in servers.values():
            server.stop()
    report(rows, proxy.log)


def report(rows: dict[str, dict], haproxy_log: Path) -> None:
    targets = {"steady": None, "kill": KILL_TARGET, "prepare": SWITCH_TARGET, "switch": SWITCH_TARGET}
    print("\n| phase | requests | failed | failed % | req/s | p50 ms | p99 ms | retried by haproxy | slowest ms | "
          "target |\n|---|---|---|---|---|---|---|---|---|---|")
    missed = []
    for name, r in rows.items():
        share, target, goal = 100 * r["errors"] / max(r["requests"], 1), targets[name], ""
        if target is not None:
            held = share < target if target else r["errors"] == 0
            goal = (f"under {target:g} %" if target else "none failed") + (": met" if held else ": MISSED")
            if not held:
                missed.append(name)
        print(f"| {name} | {r['requests']:,} | {r['errors']} | {share:.3f} | {r['rps']:,.0f} | "
              f"{r['p50_us'] / 1000:.2f} | {r['p99_us'] / 1000:.2f} | {r['retried']} | {r['slowest']} | {goal} |")
    print("\n" + "\n".join(r["note"] for r in rows.values() if r["note"]))
    for name, r in rows.items():
        if r["unserved"]:
            print(f"{name}: {len(r['unserved'])} requests haproxy could not serve (server status total-ms "
                  f"termination-state retries): " + "; ".join(r["unserved"][:10]))
    events = [line for line in haproxy_log.read_text(errors="replace").splitlines()
              if line.startswith("Server ") and (" is DOWN" in line or " is UP" in line)]
    print("haproxy: " + "\n         ".join(events))
    print(f"targets {'missed in ' + ', '.join(missed) if missed else 'met'}; "
          f"load average after: {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--words", type=int, default=20_000, help="synthetic model: vocabulary size")
    parser.add_argument("--dim", type=int, default=100, help="synthetic model: dimensions")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers of each instance")
    parser.add_argument("--concurrency", type=int, default=8, help="wrk's connections to haproxy")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load of every phase but "
                                                                  "prepare (whole seconds, as wrk takes)")
    parser.add_argument("--prepare-duration", type=int, default=20,
                        help="seconds of load of the prepare phase (preparing 20,000 words took 10-20 s on 2 "
                             "busy cores)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before the steady phase")
    parser.add_argument("--kill-at", type=float, default=3, help="kill phase: seconds in when instance a is killed")
    parser.add_argument("--restart-at", type=float, default=6, help="kill phase: seconds in when it starts again")
    parser.add_argument("--save-at", type=float, default=1, help="prepare phase: seconds in when the new model "
                                                                 "is saved")
    parser.add_argument("--switch-at", type=float, default=2, help="switch phase: seconds in when the rolling "
                                                                   "HUP starts")
    args = parser.parse_args(argv)
    if not shutil.which("haproxy"):
        print("error: haproxy not found (`make bench-replicas` installs the Debian package)", file=sys.stderr)
        return 1
    return run_in_temporary_folder(run, args, "replicas-")


if __name__ == "__main__":
    sys.exit(main())
