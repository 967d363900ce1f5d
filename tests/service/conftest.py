"""Fixtures for the service tests: small model folders, the app, a client that checks every response
against the OpenAPI description the service publishes, and the service under real gunicorn."""
from __future__ import annotations

import glob
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema_rs
import numpy as np
import pytest
import requests

from service import create_app
from trainer import artifact

ROOT = Path(__file__).resolve().parents[2]
VOCAB = 600
DIM = 16
# Words that exercise encodings; none holds a comma, which separates words in ?positive=a,b.
SPECIAL_WORDS = ["café", "naïve", "שלום", "日本語", "emoji🙂", "a+b", "x y", "100%"]
PLANTED = ["king", "queen", "man", "woman"]


def make_vectors(seed: int, size: int, dim: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Random input/output vectors, with queen = king - man + woman (plus noise) planted in."""
    rng = np.random.default_rng(seed)
    words = PLANTED + SPECIAL_WORDS + [f"w{i}" for i in range(size - len(PLANTED) - len(SPECIAL_WORDS))]
    w_in = rng.standard_normal((size, dim)).astype(np.float32)
    w_in[1] = w_in[0] - w_in[2] + w_in[3] + 0.05 * rng.standard_normal(dim)
    w_out = (0.5 * rng.standard_normal((size, dim))).astype(np.float32)
    return words, w_in, w_out


def pytest_generate_tests(metafunc):
    if "special_word" in metafunc.fixturenames:
        metafunc.parametrize("special_word", ["king", *SPECIAL_WORDS])


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    words, w_in, w_out = make_vectors(0, VOCAB, DIM)
    counts = np.arange(VOCAB, 0, -1) * 10
    return artifact.save(tmp_path_factory.mktemp("models") / "small", words, counts, w_in, w_out,
                         {"objective": "negative-sampling"})


@pytest.fixture(scope="session")
def imported_model_dir(tmp_path_factory):
    words, w_in, _ = make_vectors(1, 50, DIM)
    return artifact.save(tmp_path_factory.mktemp("models") / "imported", words, np.zeros(50), w_in, None,
                         {"objective": None})


@pytest.fixture(scope="session")
def model(model_dir):
    return artifact.load(model_dir)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def make_app(model_dir, cache_dir):
    """create_app with the small model and a test cache folder, plus any other settings."""
    def make(**config):
        return create_app({"MODEL_DIR": model_dir, "CACHE_DIR": cache_dir, "TESTING": True, **config})
    return make


@pytest.fixture(scope="session")
def app(make_app):
    return make_app(MAX_K=1000)  # above the vocabulary size: whole distributions can be asked for


@pytest.fixture(scope="session")
def spec(app):
    return json.loads(app.test_client().get("/openapi.json").data)


@pytest.fixture(scope="session")
def conforms(spec):
    """conforms(response, method, url): assert that a response's status is documented for the operation
    and its JSON body validates against the documented schema (errors against Error for unknown paths)."""
    validators = {}

    def validator(schema: dict):
        key = json.dumps(schema, sort_keys=True)
        if key not in validators:  # the document's components travel along so that $refs resolve
            validators[key] = jsonschema_rs.Draft202012Validator({**schema, "components": spec["components"]})
        return validators[key]

    def check(response, method: str, url: str):
        assert response.mimetype == "application/json", (response.status_code, response.data[:200])
        body = json.loads(response.data)
        operation = spec["paths"].get(urlsplit(url).path, {}).get(method.lower())
        if operation is None:
            schema = {"$ref": "#/components/schemas/Error"}
        else:
            documented = operation["responses"].get(str(response.status_code)) or operation["responses"]["default"]
            if "$ref" in documented:
                documented = spec["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
            schema = documented["content"]["application/json"]["schema"]
        errors = [e.message for e in validator(schema).iter_errors(body)]
        assert not errors, (method, url, response.status_code, errors[:3])
        if response.status_code >= 400:
            assert set(body) == {"error"} and body["error"]
        return body
    return check


class CheckedClient:
    """A Flask test client whose every response is checked against the OpenAPI description."""

    def __init__(self, client, conforms):
        self.client, self.conforms = client, conforms

    def request(self, method: str, url: str, **kwargs):
        response = self.client.open(url, method=method, **kwargs)
        assert response.status_code < 500, (method, url, response.data[:300])
        response.body = self.conforms(response, method, url)
        return response

    def get(self, url: str, **kwargs):
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs):
        return self.request("POST", url, **kwargs)


@pytest.fixture(scope="session")
def checked_client(conforms):
    """checked_client(app): a test client of `app` whose responses are checked like `client`'s."""
    return lambda app: CheckedClient(app.test_client(), conforms)


@pytest.fixture
def client(app, checked_client):
    return checked_client(app)


# ------------------------------------------------------------------------------------ real gunicorn

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """gunicorn with service/gunicorn.conf.py and two workers (unless `env` says otherwise) serving
    `model_dir` on a free loopback port, started in `cwd`; its standard output (the JSON access lines) and
    standard error go to `logs`."""

    def __init__(self, model_dir, logs: Path, cwd: Path = ROOT, **env):
        port = free_port()
        self.base, self.logs = f"http://127.0.0.1:{port}", logs
        env = {**os.environ, "MODEL_DIR": str(model_dir), "SKIPGRAM_CACHE_DIR": str(logs / "cache"),
               "WEB_CONCURRENCY": "2", **env}
        self.worker_count = int(env["WEB_CONCURRENCY"])
        command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "service" / "gunicorn.conf.py"),
                   "--bind", f"127.0.0.1:{port}", "service:create_app()"]
        with open(logs / "access.log", "wb") as out, open(logs / "error.log", "wb") as err:
            self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=err)

    def wait_ready(self, limit: float = 60) -> Gunicorn:
        deadline = time.monotonic() + limit
        while True:
            try:
                if requests.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            assert self.process.poll() is None, (self.logs / "error.log").read_text()
            assert time.monotonic() < deadline, "gunicorn did not become ready"
            time.sleep(0.2)

    def wait_every_worker(self, limit: float = 60) -> Gunicorn:
        """Once ready (one worker answered; the others may still be loading the model), send /healthz
        until every worker has answered."""
        deadline = time.monotonic() + limit
        with ThreadPoolExecutor(4) as pool:
            while True:
                workers = self.workers()
                if len(workers) == self.worker_count and workers <= {line["pid"] for line in self.access_lines()}:
                    return self
                assert time.monotonic() < deadline, f"not every worker answered: {workers}"
                list(pool.map(lambda _: requests.get(f"{self.base}/healthz", headers={"Connection": "close"},
                                                     timeout=10), range(8)))

    def access_lines(self) -> list[dict]:
        """The access lines written so far (each a JSON object; a line being written is left out)."""
        return [json.loads(line) for line in (self.logs / "access.log").read_text().split("\n")[:-1]]

    def workers(self) -> set[int]:
        """The master's child processes: its workers, once it is ready."""
        return {int(pid) for name in glob.glob(f"/proc/{self.process.pid}/task/*/children")
                for pid in Path(name).read_text().split()}

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=45)  # beyond graceful_timeout (30 s), after which gunicorn kills workers


@pytest.fixture(scope="session")
def server(model_dir, tmp_path_factory):
    """The small model under gunicorn, ready, shared by the tests that only send it requests."""
    running = Gunicorn(model_dir, tmp_path_factory.mktemp("gunicorn")).wait_ready().wait_every_worker()
    yield running
    assert running.stop() == 0


@pytest.fixture
def start_gunicorn(tmp_path):
    """start_gunicorn(model_dir, cwd=ROOT, **env) -> Gunicorn, logging to tmp_path; stopped after the test."""
    started = []

    def start(model_dir, cwd: Path = ROOT, **env) -> Gunicorn:
        started.append(Gunicorn(model_dir, tmp_path, cwd, **env))
        return started[-1]
    yield start
    for running in started:
        running.stop()
