"""What an operator sees of each request: its id, one JSON access line, and Prometheus metrics at /metrics.

Under gunicorn every worker writes its metrics to files in PROMETHEUS_MULTIPROC_DIR (prometheus-client's
multiprocess mode: gunicorn.conf.py makes that folder at each start, before the workers fork, and drops the
live gauges of the workers that exit) and /metrics adds them up; without it (the Flask test client) the
process counts alone. Requests are labelled by their Flask route, never by the raw path (every path that is
no endpoint counts as UNMATCHED), by a method of METHODS (others count as "OTHER") and by status, so the
series stay few whatever clients send.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid

from flask import Flask, Response, g, has_request_context, request
from flask.logging import default_handler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")  # a client's id is kept if it is this, else replaced
UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
# From the ~0.3 ms of a table-backed answer to the second an exact search of a very large model takes
DURATION_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
_to_json = json.JSONEncoder(separators=(",", ":")).encode  # made once: json.dumps(separators=) makes one a call


def install(app: Flask, served: dict, prepare_seconds: float | None, reload_failed: bool = False) -> None:
    """Give every request of `app` an id, a JSON access line and its place in the metrics; add GET
    /metrics. Install before any other request hook, so that the requests those refuse are counted too.

    served: Embeddings.describe() of the model served; prepare_seconds: Derived.prepare_seconds;
    reload_failed: whether the last HUP kept this model because the folder's new one cannot be served."""
    _log_as_json(app)
    metrics = app.extensions["metrics"] = Metrics(served, prepare_seconds, reload_failed)
    app.add_url_rule("/metrics", "metrics", lambda: _exposition(metrics.exposed), methods=["GET"])
    metrics.start_series(app.url_map.iter_rules())
    digest = served["digest"]

    # Each use of flask.request or flask.g costs ~2 us through its proxy: the hooks take the objects once.
    @app.before_request
    def begin() -> None:
        req, state = request._get_current_object(), g._get_current_object()
        given = req.headers.get(REQUEST_ID_HEADER)
        state.request_id = given if given is not None and REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state.started = time.perf_counter()
        metrics.in_progress.inc()

    @app.after_request
    def finish(response: Response) -> Response:
        req, state = request._get_current_object(), g._get_current_object()
        seconds = time.perf_counter() - state.started
        rule, method, status = req.url_rule, req.method, response.status_code
        route = rule.rule if rule is not None else UNMATCHED
        metrics.observe(route, method, status, seconds)
        response.headers[REQUEST_ID_HEADER] = state.request_id
        line = _to_json({"time": _utc(time.time()), "request_id": state.request_id, "method": method,
                         "route": route, "path": req.path, "status": status,
                         "duration_ms": round(seconds * 1000, 3), "digest": digest, "pid": os.getpid()})
        try:  # written here rather than through logging, whose records cost a request ~20 us more
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (OSError, ValueError):  # standard output closed: the answer matters more than its line
            pass
        return response

    @app.teardown_request
    def end(_error) -> None:  # also after an exception that escaped the app (only when testing)
        if "started" in g:
            metrics.in_progress.dec()


class Metrics:
    """The service's metric families and, made once per label set, the children that requests update."""

    def __init__(self, served: dict, prepare_seconds: float | None, reload_failed: bool = False):
        registry = CollectorRegistry()  # the app's own: apps made side by side (tests) count apart
        self.requests = Counter("skipgram_requests", "Requests answered, by route, method and status.",
                                ("endpoint", "method", "status"), registry=registry)
        self.durations = Histogram("skipgram_request_duration_seconds",
                                   "Seconds from the request's routing to its response, by route.",
                                   ("endpoint",), buckets=DURATION_BUCKETS, registry=registry)
        self.in_progress = Gauge("skipgram_requests_in_progress", "Requests being answered.",
                                 multiprocess_mode="livesum", registry=registry)
        info = Gauge("skipgram_model_info", "The model served (always 1): name, contents digest, vocabulary "
                     "size, dimension, index kind.", ("model", "digest", "vocab_size", "dim", "index"),
                     multiprocess_mode="livemax", registry=registry)
        info.labels(served["model"], served["digest"], str(served["vocab_size"]), str(served["dim"]),
                    served["index"]["type"]).set(1)
        prepared = Gauge("skipgram_model_prepare_seconds", "Seconds the derived data of the model served "
                         "took to prepare (or to check, when cached) when the server started.",
                         multiprocess_mode="livemax", registry=registry)
        if prepare_seconds is not None:
            prepared.set(prepare_seconds)
        Gauge("skipgram_model_reload_failed", "1 when the last HUP found a model folder that cannot be served "
              "and kept serving the previous contents (the reason is in /readyz), else 0.",
              multiprocess_mode="livemax", registry=registry).set(int(reload_failed))
        self._counts: dict[tuple[str, str, int], Counter] = {}  # (route, method, status) -> counter child
        self._durations: dict[str, Histogram] = {}  # route -> histogram child
        directory = os.environ.get(MULTIPROC_DIR)
        if directory:  # every worker's files, read at each scrape
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed, path=directory)
        else:
            self.exposed = registry

    def start_series(self, rules) -> None:
        """Every endpoint's series from the start (at 0), so that a scrape sees its first request as a change."""
        for rule in rules:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                self._count(rule.rule, method, 200)
            self._duration(rule.rule)
        self._duration(UNMATCHED)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration: two dictionary look-ups once warm."""
        count = self._counts.get((route, method, status))
        if count is None:  # first of its kind, or a method outside METHODS (never a key of its own)
            count = self._count(route, method if method in METHODS else "OTHER", status)
        count.inc()
        duration = self._durations.get(route)
        (duration if duration is not None else self._duration(route)).observe(seconds)

    def _count(self, route: str, method: str, status: int) -> Counter:
        key = (route, method, status)
        if key not in self._counts:
            self._counts[key] = self.requests.labels(route, method, str(status))
        return self._counts[key]

    def _duration(self, route: str) -> Histogram:
        if route not in self._durations:
            self._durations[route] = self.durations.labels(route)
        return self._durations[route]


def _exposition(registry: CollectorRegistry) -> Response:
    """The Prometheus text format (or OpenMetrics, when the scraper asks for it)."""
    encode, content_type = choose_encoder(request.headers.get("Accept"))
    return Response(encode(registry), content_type=content_type)


# ---------------------------------------------------------------------------------------------- logs

def _log_as_json(app: Flask) -> None:
    """The service's warnings and errors as JSON lines on standard error, with the id of the request they
    happened in (the access lines go to standard output). A request that raised is logged once there, by
    Flask, with its traceback; its access line says 500."""
    if not any(isinstance(handler, JsonLines) for handler in app.logger.handlers):  # once per process
        app.logger.addHandler(JsonLines())
    app.logger.removeHandler(default_handler)  # Flask's plain-text one, which would log errors twice


class JsonLines(logging.StreamHandler):
    """One JSON object per record (time, level, logger, message, request id, traceback), on sys.stderr as
    it is when the record is written."""

    def __init__(self):
        super().__init__()
        self.setFormatter(JsonFormatter())

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler sets it; the stream is looked up at each record
        pass


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": _utc(record.created), "level": record.levelname.lower(), "logger": record.name,
                 "message": record.getMessage()}
        if has_request_context() and "request_id" in g:
            entry["request_id"] = g.request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _to_json(entry)


_second = (0, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(0)))  # the last second formatted


def _utc(seconds: float) -> str:
    """ISO 8601 in UTC, to the millisecond (the second's text made once a second)."""
    global _second
    whole, cached = int(seconds), _second  # read once: another thread may replace it
    if cached[0] != whole:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int(seconds % 1 * 1000):03d}Z"
