"""The service as deployed: real gunicorn with service/gunicorn.conf.py, over HTTP on loopback."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn(model_dir, cache_dir, port: int, log_dir: Path, **env) -> subprocess.Popen:
    env = {**os.environ, "MODEL_DIR": str(model_dir), "SKIPGRAM_CACHE_DIR": str(cache_dir),
           "WEB_CONCURRENCY": "2", **env}
    command = [sys.executable, "-m", "gunicorn", "-c", "service/gunicorn.conf.py",
               "--bind", f"127.0.0.1:{port}", "service:create_app()"]
    with open(log_dir / "access.log", "wb") as out, open(log_dir / "error.log", "wb") as err:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    logs = tmp_path_factory.mktemp("gunicorn")
    port = free_port()
    process = gunicorn(model_dir, logs / "cache", port, logs)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert process.poll() is None, (logs / "error.log").read_text()
        assert time.monotonic() < deadline, "gunicorn did not become ready"
        time.sleep(0.2)
    yield SimpleNamespace(base=base, logs=logs)
    process.terminate()
    assert process.wait(timeout=30) == 0


@pytest.fixture
def http(server, conforms):
    """http(method, path, **requests_kwargs) -> (response, checked JSON body)."""
    def call(method: str, path: str, **kwargs):
        response = requests.request(method, server.base + path, timeout=10, **kwargs)
        adapted = SimpleNamespace(status_code=response.status_code, data=response.content,
                                  mimetype=response.headers.get("Content-Type", "").split(";")[0])
        return response, conforms(adapted, method, path.split("?")[0])
    return call


def test_answers_over_http(http, model):
    assert http("GET", "/healthz")[1] == {"status": "ok"}
    assert http("GET", "/readyz")[1]["vocab_size"] == model.vocab_size
    assert http("GET", "/vector?word=caf%C3%A9")[1]["vector"] == model.input_vectors[model.index["café"]].tolist()
    assert http("GET", "/similar?positive=king,woman&negative=man&k=1")[1]["neighbors"][0]["word"] == "queen"
    assert len(http("GET", "/similar?word=king&k=7")[1]["neighbors"]) == 7
    assert len(http("GET", "/context-probs?word=king&k=3")[1]["context"]) == 3
    vector = model.input_vectors[model.index["man"]].tolist()
    assert http("POST", "/similar", json={"vector": vector, "k": 1})[1]["neighbors"][0]["word"] == "man"
    assert "openapi" in http("GET", "/openapi.json")[1]


def test_both_workers_answer_concurrently(http, server):
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: http("GET", f"/similar?word=w{i}&k=3")[0].status_code, range(200)))
    assert codes == [200] * 200
    time.sleep(0.5)  # let the access log reach the file
    assert "GET /similar?word=w199&k=3" in (server.logs / "access.log").read_text()


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("GET", "/similar?word=nope", {}, 404),
    ("GET", "/similar?word=king&k=0", {}, 400),
    ("GET", "/vector?word=%zz%", {}, 404),
    ("GET", "/vector?word=" + "a" * 2000, {}, 400),
    ("PUT", "/vector", {}, 405),
    ("POST", "/vector", {"data": b"[" * 10_000 + b"]" * 10_000,
                         "headers": {"Content-Type": "application/json"}}, 400),
    ("POST", "/vector", {"data": b"x" * ((1 << 20) + 1), "headers": {"Content-Type": "application/json"}}, 413),
    ("POST", "/vector", {"data": b'{"words": []}', "headers": {"Content-Type": "text/plain"}}, 415),
    ("POST", "/similar", {"data": b'{"vector": [NaN]}', "headers": {"Content-Type": "application/json"}}, 400),
])
def test_errors_over_http_are_json(http, method, path, kwargs, status):
    assert http(method, path, **kwargs)[0].status_code == status


def test_a_request_line_beyond_gunicorns_limit_is_refused_before_the_app(server):
    # gunicorn itself answers request lines over its limit (8190 bytes at most), in plain text.
    response = requests.get(f"{server.base}/vector?word={'a' * 100_000}", timeout=10)
    assert response.status_code in (400, 414)


@pytest.mark.parametrize("damage, named", [
    (lambda folder: (folder / "input_vectors.npy").write_bytes(b"\x93NUMPY garbage"), "input_vectors.npy"),
    (lambda folder: (folder / "meta.json").write_text("{"), "meta.json"),
    (lambda folder: (folder / "vocab.tsv").unlink(), "vocab.tsv"),
])
def test_an_unusable_model_stops_gunicorn_naming_the_file(model_dir, tmp_path, damage, named):
    folder = Path(shutil.copytree(model_dir, tmp_path / "broken"))
    damage(folder)
    process = gunicorn(folder, tmp_path / "cache", free_port(), tmp_path)
    assert process.wait(timeout=60) != 0
    log = (tmp_path / "error.log").read_text()
    assert f"{folder / named}" in log, log


def test_a_missing_model_dir_setting_stops_gunicorn(tmp_path, model_dir):
    process = gunicorn(model_dir, tmp_path / "cache", free_port(), tmp_path, MODEL_DIR="")
    assert process.wait(timeout=60) != 0
    assert "MODEL_DIR is not set" in (tmp_path / "error.log").read_text()


def test_the_service_imports_neither_numba_nor_training_code(model_dir, tmp_path):
    code = ("import json, sys\n"
            "from service import create_app\n"
            f"create_app({{'MODEL_DIR': {str(model_dir)!r}, 'CACHE_DIR': {str(tmp_path)!r}}})\n"
            "print(json.dumps(sorted(m for m in sys.modules if m == 'numba' or m.startswith(('numba.', 'trainer')))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == ["trainer", "trainer.artifact"]
