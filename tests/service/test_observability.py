"""Request ids, JSON access lines and /metrics, under real gunicorn with two workers (and, for a request that
raises, through the Flask test client)."""
from __future__ import annotations

import json
import os
import re
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.service.test_gunicorn import wait_until

pytestmark = pytest.mark.slow
ROUTES = {"/healthz", "/readyz", "/openapi.json", "/metrics", "/vector", "/similar", "/map", "/words",
          "/context-probs", "/", "/static/<path:filename>", "<unmatched>"}


def scrape(base: str) -> dict[str, list]:
    """/metrics parsed by prometheus-client's own parser: metric family name -> its samples."""
    response = requests.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    return {family.name: family.samples for family in text_string_to_metric_families(response.text)}


def requests_total(metrics: dict) -> Counter:
    """(endpoint, method, status) -> requests counted."""
    return Counter({(s.labels["endpoint"], s.labels["method"], s.labels["status"]): s.value
                    for s in metrics["skipgram_requests"] if s.name == "skipgram_requests_total"})


def send(base: str, traffic: list[tuple[str, str, dict]], prefix: str) -> list[str]:
    """Send every (method, path, requests kwargs) of `traffic` over 8 connections, each with its own
    X-Request-ID; return the ids."""
    ids = [f"{prefix}-{i}" for i in range(len(traffic))]

    def one(i: int) -> None:
        method, path, kwargs = traffic[i]
        response = requests.request(method, base + path, headers={"X-Request-ID": ids[i]}, timeout=10, **kwargs)
        assert response.headers["X-Request-ID"] == ids[i]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(len(traffic))))
    return ids


def logged(running, ids: list[str]) -> dict[str, dict]:
    """The access lines of the requests `ids`, once every one of them is written: request id -> line."""
    def lines() -> dict | None:
        found = {line["request_id"]: line for line in running.access_lines() if line["request_id"] in set(ids)}
        return found if len(found) == len(ids) else None
    return wait_until(lines, 10, "an access line for every request sent")


TRAFFIC = ([("GET", "/similar?word=king&k=3", {})] * 40 + [("GET", "/similar?word=nope", {})] * 12
           + [("GET", "/vector?word=queen", {})] * 20 + [("POST", "/vector", {"json": {"words": ["king"]}})] * 8
           + [("GET", "/context-probs?word=king&k=0", {})] * 10 + [("PUT", "/vector", {})] * 6
           + [("GET", f"/no/such/path/{i}", {}) for i in range(15)] + [("GET", "/healthz", {})] * 5)
EXPECTED = {("/similar", "GET", "200"): 40, ("/similar", "GET", "404"): 12, ("/vector", "GET", "200"): 20,
            ("/vector", "POST", "200"): 8, ("/context-probs", "GET", "400"): 10,
            ("<unmatched>", "PUT", "405"): 6, ("<unmatched>", "GET", "404"): 15, ("/healthz", "GET", "200"): 5,
            ("/metrics", "GET", "200"): 1}  # the scrape before: a scrape is counted once it is answered


def durations_count(metrics: dict) -> Counter:
    """endpoint -> requests the duration histogram saw."""
    return Counter({s.labels["endpoint"]: s.value for s in metrics["skipgram_request_duration_seconds"]
                    if s.name.endswith("_count")})


def test_metrics_count_what_both_workers_answered(server, model):
    before = scrape(server.base)
    ids = send(server.base, TRAFFIC, "counted")
    lines = logged(server, ids)
    assert {line["pid"] for line in lines.values()} == server.workers()  # both workers took part
    after = scrape(server.base)
    counted = requests_total(after)
    counted.subtract(requests_total(before))
    assert {key: value for key, value in counted.items() if value} == EXPECTED

    # the histogram saw every request of each route once; its buckets are cumulative up to +Inf
    seen = durations_count(after)
    seen.subtract(durations_count(before))
    per_route = Counter()
    for (route, _, _), n in EXPECTED.items():
        per_route[route] += n
    assert {route: n for route, n in seen.items() if n} == per_route
    durations, count = after["skipgram_request_duration_seconds"], durations_count(after)
    for route in ("/similar", "/vector", "<unmatched>"):
        buckets = [s.value for s in durations if s.name.endswith("_bucket") and s.labels["endpoint"] == route]
        assert len(buckets) == 13 and buckets == sorted(buckets) and buckets[-1] == count[route]
    samples = {family: [(s.labels, s.value) for s in after[family]]
               for family in ("skipgram_requests_in_progress", "skipgram_model_info")}
    assert samples["skipgram_requests_in_progress"] == [({}, 1.0)]  # the scrape itself
    assert samples["skipgram_model_info"] == [({"model": "small", "digest": model.digest, "vocab_size": "600",
                                                "dim": "16", "index": "flat"}, 1.0)]
    [(_, prepared)] = [(s.labels, s.value) for s in after["skipgram_model_prepare_seconds"]]
    assert 0 <= prepared < 60


def test_unknown_paths_and_methods_add_no_label_values(server):
    traffic = ([("GET", f"/{i}/{'x' * i}", {}) for i in range(20)] + [("BREW", "/similar", {})] * 3
               + [("GET", "/similar/", {}), ("GET", "//similar", {}), ("POST", "/metrics", {})])
    ids = send(server.base, traffic, "unknown")
    logged(server, ids)
    metrics = scrape(server.base)
    endpoints = {s.labels["endpoint"] for family in ("skipgram_requests", "skipgram_request_duration_seconds")
                 for s in metrics[family]}
    assert endpoints <= ROUTES
    methods = {s.labels["method"] for s in metrics["skipgram_requests"]}
    assert "BREW" not in methods and "OTHER" in methods


@pytest.mark.parametrize("given, kept", [
    ("abc-DEF_1.2", True), ("a" * 128, True), ("0", True),
    ("a" * 129, False), ("", False), ("has space", False), ("a/b", False), ("caf\xe9", False),
    ("x\ty", False), ("{}", False),
])
def test_a_request_id_is_echoed_when_valid_else_replaced(server, model, given, kept):
    response = requests.get(f"{server.base}/similar?word=king&k=2", headers={"X-Request-ID": given}, timeout=10)
    echoed = response.headers["X-Request-ID"]
    assert echoed == given if kept else re.fullmatch("[0-9a-f]{32}", echoed), echoed
    [line] = logged(server, [echoed]).values()
    assert set(line) == {"time", "request_id", "method", "route", "path", "status", "duration_ms", "digest", "pid"}
    assert (line["method"], line["route"], line["path"], line["status"]) == ("GET", "/similar", "/similar", 200)
    assert line["digest"] == model.digest and line["pid"] in server.workers()
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert datetime.fromisoformat(line["time"]).utcoffset().total_seconds() == 0


def test_new_request_ids_differ_and_every_stdout_line_is_json(server):
    ids = {requests.get(f"{server.base}/nope", timeout=10).headers["X-Request-ID"] for _ in range(20)}
    assert len(ids) == 20
    lines = logged(server, sorted(ids))
    assert {(line["route"], line["status"]) for line in lines.values()} == {("<unmatched>", 404)}
    text = (server.logs / "access.log").read_text()
    assert all(json.loads(line) for line in text.splitlines())


def test_a_request_that_raises_is_logged_once_with_its_id(make_app, capsys):
    app = make_app(PROPAGATE_EXCEPTIONS=False)  # as under gunicorn: a 500, not the exception

    def boom():
        raise RuntimeError("the view failed")
    app.add_url_rule("/boom", "boom", boom)
    capsys.readouterr()
    response = app.test_client().get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500 and response.headers["X-Request-ID"] == "boom-1"
    assert set(json.loads(response.data)) == {"error"}
    out, err = capsys.readouterr()
    errors = [json.loads(line) for line in err.splitlines() if "the view failed" in line]
    assert len(errors) == 1, err
    assert errors[0]["request_id"] == "boom-1" and errors[0]["level"] == "error"
    assert "RuntimeError: the view failed" in errors[0]["exception"]
    [access] = [json.loads(line) for line in out.splitlines() if '"boom-1"' in line]
    assert (access["route"], access["status"]) == ("/boom", 500)


def test_counts_survive_a_dead_worker_and_a_hup_and_the_folder_goes_at_exit(model_dir, start_gunicorn):
    running = start_gunicorn(model_dir).wait_ready().wait_every_worker()
    folder = Path(re.search(r"workers' metrics in (\S+)", (running.logs / "error.log").read_text()).group(1))
    workers = running.workers()
    ids = send(running.base, [("GET", "/similar?word=king", {})] * 40, "survive")
    assert {line["pid"] for line in logged(running, ids).values()} == workers
    assert requests_total(scrape(running.base))["/similar", "GET", "200"] == 40  # a fresh folder: nothing else

    victim = min(workers)
    assert (folder / f"gauge_livesum_{victim}.db").exists()
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not list(folder.glob(f"gauge_live*_{victim}.db")), 30, "the dead worker's live gauges gone")
    wait_until(lambda: len(running.workers() - {victim}) == 2, 60, "a new worker")
    metrics = scrape(running.base)
    assert requests_total(metrics)["/similar", "GET", "200"] == 40  # the dead worker's counts stay
    assert metrics["skipgram_requests_in_progress"][0].value == 1

    before_hup = running.workers()
    os.kill(running.process.pid, signal.SIGHUP)
    wait_until(lambda: not running.workers() & before_hup and len(running.workers()) == 2, 60, "HUP's workers")
    wait_until(lambda: requests.get(f"{running.base}/readyz", timeout=5).status_code == 200, 30, "ready again")
    wait_until(lambda: not any(list(folder.glob(f"gauge_live*_{pid}.db")) for pid in before_hup), 30,
               "the old workers' live gauges gone")
    metrics = scrape(running.base)
    assert requests_total(metrics)["/similar", "GET", "200"] == 40
    assert len(metrics["skipgram_model_info"]) == 1 and metrics["skipgram_requests_in_progress"][0].value == 1
    assert running.stop() == 0
    assert not folder.exists()
