"""A real Prometheus server scrapes the service image, run by scripts/smoke.Dockerfile (stage prometheus) in a
RUN step, as the image's user, with Debian's prometheus package installed in that stage only.

  python prometheus_smoke.py   start the image's command (2 workers) on a tiny model, start prometheus
                               scraping its /metrics every second, send known traffic, then ask Prometheus's
                               HTTP API for sum by (endpoint, status) (skipgram_requests_total) until it
                               equals what was sent (or TIMEOUT_SECONDS pass); stop both

Prints one PASS or FAIL line per check and exits 1 when any check failed. The server is handled by
docker_smoke.py's functions, copied beside this file.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from docker_smoke import COMMAND, check, failures, free_port, get, make_model, stop, wait_healthy

PROMETHEUS = "/usr/bin/prometheus"
JOB = "skipgram"
QUERY = f'sum by (endpoint, status) (skipgram_requests_total{{job="{JOB}"}})'
TIMEOUT_SECONDS = 30
# The traffic sent, as (path, times), and the counts Prometheus must then report per (endpoint, status)
TRAFFIC = [("/similar?word=king&k=3", 7), ("/vector?word=queen", 5), ("/similar?word=no-such-word&k=3", 2),
           ("/no-such-path", 3)]
EXPECTED = {("/similar", "200"): 7, ("/vector", "200"): 5, ("/similar", "404"): 2, ("<unmatched>", "404"): 3}
# Endpoints that others ask too: the start-up poll (/healthz) and Prometheus's own scrapes (/metrics)
BACKGROUND = {"/healthz", "/metrics"}

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: {job}
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def prom_get(port: int, path: str) -> bytes | None:
    """The body of GET http://127.0.0.1:port/path on Prometheus, or None when it does not answer 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.read()
    except OSError:
        return None


def query(port: int, promql: str) -> list | None:
    """The result vector of an instant query through the HTTP API, or None on any error."""
    body = prom_get(port, "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    try:
        body = json.loads(body) if body is not None else None
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("status") == "success":
        return body["data"]["result"]
    return None


def counts(result: list) -> dict[tuple[str, str], float]:
    return {(s["metric"].get("endpoint", ""), s["metric"].get("status", "")): float(s["value"][1]) for s in result}


def _labelled(found: dict) -> dict[str, int]:
    return {f"{endpoint} {status}": int(value) for (endpoint, status), value in sorted(found.items())}


def matches(found: dict[tuple[str, str], float]) -> bool:
    """The traffic's series equal what was sent and every other series is 0, but for BACKGROUND endpoints."""
    return all(found.get(key) == value for key, value in EXPECTED.items()) and all(
        value == 0 for key, value in found.items() if key not in EXPECTED and key[0] not in BACKGROUND)


def start_prometheus(folder: Path, service_port: int) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()  # RUN steps share the host's network, where 9090 may be taken
    config = folder / "prometheus.yml"
    config.write_text(CONFIG.format(job=JOB, port=service_port))
    log_path = folder / "prometheus.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
                                   f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    return server, port, log_path


def wait_for(condition, seconds: float):
    """condition() polled every 0.5 s until it returns something true or `seconds` pass: its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def scrape_check(service_port: int, folder: Path) -> None:
    version = subprocess.run([PROMETHEUS, "--version"], capture_output=True, text=True).stdout.splitlines()
    check("prometheus installed", bool(version), version[0] if version else PROMETHEUS)
    prometheus, port, log_path = start_prometheus(folder, service_port)
    try:
        state = wait_for(lambda: "exited" if prometheus.poll() is not None else
                         "ready" if prom_get(port, "/-/ready") is not None else None, TIMEOUT_SECONDS)
        detail = f"{state or 'no answer'}: port {port}, pid {prometheus.pid}"
        if not check("prometheus ready", state == "ready", detail):
            return
        for path, times in TRAFFIC:
            for _ in range(times):
                get(service_port, path)
        sent = ", ".join(f"{times} x GET {path}" for path, times in TRAFFIC)
        found: dict = {}

        def scraped() -> bool:
            result = query(port, QUERY)
            found.clear()
            found.update(counts(result or []))
            return matches(found)

        started = time.monotonic()
        ok = wait_for(scraped, TIMEOUT_SECONDS)
        shown = _labelled({key: value for key, value in found.items() if value or key in EXPECTED})
        detail = (f"after {time.monotonic() - started:.1f} s: {shown}" if ok
                  else f"expected {_labelled(EXPECTED)}, last got {shown}")
        check(f"Prometheus's {QUERY} equals the traffic sent ({sent})", ok, detail)
        up = [s["value"][1] for s in query(port, f'up{{job="{JOB}"}}') or []]
        check(f'up{{job="{JOB}"}} is 1', up == ["1"], up)
        # a scrape is counted once answered, so the next scrape is the first to see one
        scrapes = wait_for(lambda: counts(query(port, QUERY) or []).get(("/metrics", "200"), 0), TIMEOUT_SECONDS)
        check("Prometheus's own scrapes counted under /metrics", scrapes >= 1, int(scrapes))
    finally:
        prometheus.send_signal(signal.SIGTERM)
        try:
            code = prometheus.wait(timeout=30)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            code = prometheus.wait()
        check("prometheus stops on SIGTERM", code == 0, f"exit status {code}")
        if failures:
            print("---- prometheus log ----\n" + log_path.read_text(errors="replace") + "---- end of log ----")


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="prometheus-smoke-"))
    model_dir = make_model(folder / "model")
    port = free_port()
    # 2 workers: Prometheus must see the sum of both (prometheus-client's multiprocess mode)
    env = dict(os.environ, MODEL_DIR=str(model_dir), PORT=str(port), WEB_CONCURRENCY="2")
    log_path = folder / "gunicorn.log"
    with open(log_path, "wb") as log:
        service = subprocess.Popen(COMMAND, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if check("server answers /healthz", wait_healthy(service, port), f"port {port}, 2 workers"):
            scrape_check(port, folder)
            check("server still running", service.poll() is None)
    finally:
        stop(service)
        if failures:
            print("---- gunicorn log (last 60 lines) ----")
            print("\n".join(log_path.read_text(errors="replace").splitlines()[-60:]) + "\n---- end of log ----")
    print(f"prometheus smoke test: {'FAILED: ' + '; '.join(failures) if failures else 'all checks passed'}",
          flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
