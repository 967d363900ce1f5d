"""The service as deployed: real gunicorn with service/gunicorn.conf.py, over HTTP on loopback."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


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


def test_a_model_just_trained_is_served_over_http(tmp_path, start_gunicorn):
    """The whole path: the trainer's command line writes a model folder, gunicorn serves it."""
    import numpy as np

    from tests.planted import member, write_planted_corpus
    from trainer import artifact
    from trainer.__main__ import main as trainer_main

    corpus = write_planted_corpus(tmp_path / "planted.txt")
    assert trainer_main(["train", str(corpus), "--out", str(tmp_path / "trained"), "--dim", "24",
                         "--epochs", "4", "--min-count", "1", "--quiet"]) == 0
    model = artifact.load(tmp_path / "trained")
    base = start_gunicorn(tmp_path / "trained").wait_ready().base
    # The group's members and context words share their contexts: they are the nearest, nothing else.
    neighbours = requests.get(f"{base}/similar", params={"word": member(0, 0), "k": 8}, timeout=10).json()
    assert all(n["word"].startswith("g0") for n in neighbours["neighbors"]), neighbours
    context = requests.get(f"{base}/context-probs", params={"word": member(0, 0), "k": 5}, timeout=10).json()
    scores = model.output_vectors.astype(np.float64) @ model.input_vectors[model.index[member(0, 0)]]
    probs = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    assert [c["word"] for c in context["context"]] == [model.words[i] for i in np.argsort(-probs)[:5]]
    assert context["objective"] == "negative-sampling"


def test_both_workers_answer_concurrently(http, server):
    ids = {f"concurrent-{i}": i for i in range(200)}
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda id_: http("GET", f"/similar?word=w{ids[id_]}&k=3",
                                                headers={"X-Request-ID": id_})[0].status_code, ids))
    assert codes == [200] * 200

    def logged() -> dict | None:
        lines = {line["request_id"]: line for line in server.access_lines() if line["request_id"] in ids}
        return lines if len(lines) == len(ids) else None
    lines = wait_until(logged, 10, "an access line for every request")
    assert {line["pid"] for line in lines.values()} == server.workers()  # both answered


def wait_until(condition, limit: float, what: str):
    """condition()'s first true value, polled until `limit` seconds have passed."""
    deadline = time.monotonic() + limit
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {limit} s: {what}"
        time.sleep(0.05)
    return value


def test_a_killed_worker_is_replaced_while_the_other_keeps_answering(model_dir, start_gunicorn):
    running = start_gunicorn(model_dir).wait_ready()
    # ready means one worker answers; the master may still be forking the other
    def both() -> set[int] | None:
        pids = running.workers()
        return pids if len(pids) == 2 else None

    before = wait_until(both, 30, "two workers")
    stop, outcomes = threading.Event(), []  # outcomes: HTTP status, or None for a broken connection

    def load(n: int) -> None:
        while not stop.is_set():
            try:
                outcomes.append(requests.get(f"{running.base}/similar?word=w{n}&k=3", timeout=10).status_code)
            except requests.ConnectionError:
                outcomes.append(None)

    def answers() -> bool:
        try:
            return requests.get(f"{running.base}/similar?word=king", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    def replaced() -> set[int] | None:
        workers = running.workers()
        return workers if len(workers) == 2 and victim not in workers else None

    with ThreadPoolExecutor(4) as pool:
        loads = [pool.submit(load, n) for n in range(4)]
        try:
            wait_until(lambda: len(outcomes) >= 50, 30, "load under way")
            victim = min(before)
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            wait_until(answers, 5, "a successful answer after the kill")
            assert time.monotonic() - killed <= 5
            after = wait_until(replaced, 60, f"worker {victim} replaced")
            new = (after - before).pop()
            wait_until(lambda: any(line["pid"] == new and line["status"] == 200 for line in running.access_lines()),
                       60, f"the new worker {new} answering")  # once it has loaded the model
        finally:
            stop.set()
        for f in loads:
            f.result()
    assert before - {victim} <= after  # the other worker was left alone
    # A sync worker holds one connection at a time: only the request it was answering may be lost.
    assert outcomes.count(None) <= 1 and set(outcomes) <= {200, None}, sorted(set(outcomes), key=str)


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
def test_an_unusable_model_stops_gunicorn_naming_the_file(model_dir, tmp_path, start_gunicorn, damage, named):
    folder = Path(shutil.copytree(model_dir, tmp_path / "broken"))
    damage(folder)
    assert start_gunicorn(folder).process.wait(timeout=60) != 0
    log = (tmp_path / "error.log").read_text()
    assert f"{folder / named}" in log, log


def test_a_missing_model_dir_setting_stops_gunicorn(tmp_path, model_dir, start_gunicorn):
    assert start_gunicorn(model_dir, MODEL_DIR="").process.wait(timeout=60) != 0
    assert "MODEL_DIR is not set" in (tmp_path / "error.log").read_text()


def test_the_service_imports_neither_numba_nor_training_code(model_dir, tmp_path):
    code = ("import json, sys\n"
            "from service import create_app\n"
            f"create_app({{'MODEL_DIR': {str(model_dir)!r}, 'CACHE_DIR': {str(tmp_path)!r}}})\n"
            "print(json.dumps(sorted(m for m in sys.modules if m == 'numba' or m.startswith(('numba.', 'trainer')))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == ["trainer", "trainer.artifact"]


def test_relative_model_and_cache_folders_are_those_of_the_folder_gunicorn_starts_in(model_dir, model, tmp_path,
                                                                                     start_gunicorn):
    run = tmp_path / "run"  # not the project root, nor the folder of the logs
    shutil.copytree(model_dir, run / "models" / "small")
    assert not (ROOT / "cache").exists()
    running = start_gunicorn("models/small", cwd=run, SKIPGRAM_CACHE_DIR="cache").wait_ready()
    assert requests.get(f"{running.base}/readyz", timeout=10).json()["digest"] == model.digest
    got = requests.get(f"{running.base}/similar", params={"word": "king", "k": 5}, timeout=10).json()["neighbors"]
    scores = model.input_vectors @ model.input_vectors[0] / np.linalg.norm(model.input_vectors, axis=1)
    scores[0] = -np.inf
    assert [n["word"] for n in got] == [model.words[i] for i in np.argsort(-scores)[:5]]
    assert [entry.name for entry in (run / "cache").iterdir()] == [f"small-{model.digest}"]
    assert not (ROOT / "cache").exists() and not (tmp_path / "cache").exists()
    served = (run / "cache" / f"small-{model.digest}" / "models.txt").read_text().split()
    assert served == [str(run / "models" / "small")]  # recorded as an absolute path
    assert "preparing it in this process" not in (tmp_path / "error.log").read_text()  # the workers mapped it


def ask(url: str):
    """One request on a new connection: /readyz's digest (or "ok") for a 200, else the status code, or the
    exception's name when no answer came."""
    try:
        response = requests.get(url, headers={"Connection": "close"}, timeout=10)
    except requests.RequestException as exc:
        return type(exc).__name__
    return response.json().get("digest", "ok") if response.status_code == 200 else response.status_code


def answers(base: str, seconds: float, threads: int = 4) -> list:
    """Every answer to /readyz (see ask()) over `seconds` from `threads` clients."""
    deadline, found = time.monotonic() + seconds, []

    def run() -> None:
        while time.monotonic() < deadline:
            found.append(ask(base + "/readyz"))
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: run(), range(threads)))
    return found


class Load:
    """Clients sending /similar and /readyz without pause in the background (bounded: 4 threads, loopback),
    keeping every answer (see ask())."""

    def __init__(self, base: str):
        self.base, self.found, self._stop = base, [], threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(path,), daemon=True)
                         for path in ("/readyz", "/readyz", "/similar?word=king&k=3", "/vector?word=queen")]
        for thread in self._threads:
            thread.start()

    def _run(self, path: str) -> None:
        while not self._stop.is_set():
            self.found.append(ask(self.base + path))

    def stop(self) -> list:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return self.found


def replace_model(folder: Path, seed: int) -> str:
    """Save another model of the test's shape at `folder`, atomically, as the trainer does; its digest."""
    from tests.service.conftest import DIM, VOCAB, make_vectors
    from trainer import artifact

    words, w_in, w_out = make_vectors(seed, VOCAB, DIM)
    artifact.save(folder, words, np.arange(VOCAB, 0, -1), w_in, w_out, {"objective": "negative-sampling"})
    return artifact.read_digest(folder)


def test_a_worker_started_after_the_folder_changed_serves_what_its_siblings_serve(model_dir, tmp_path,
                                                                                  start_gunicorn):
    """The master holds the files of the contents it prepared: a worker that replaces one killed after the
    model folder was replaced loads those, not the folder's new contents, until HUP."""
    from trainer import artifact

    folder = Path(shutil.copytree(model_dir, tmp_path / "served"))
    running = start_gunicorn(folder).wait_ready().wait_every_worker()
    old = artifact.read_digest(folder)
    assert set(answers(running.base, 1)) == {old}
    new = replace_model(folder, 7)
    assert new != old
    first = running.workers()
    os.kill(min(first), signal.SIGKILL)
    wait_until(lambda: len(running.workers()) == 2 and running.workers() != first, 10, "a replacement worker")
    replacement = (running.workers() - first).pop()
    running.wait_every_worker()  # the replacement serves (under a loaded machine it may take seconds to load)
    seen = len(running.access_lines())
    during = answers(running.base, 3)
    assert len(during) >= 20 and set(during) == {old}, set(during)
    readyz_by = {line["pid"] for line in running.access_lines()[seen:] if line["path"] == "/readyz"}
    assert replacement in readyz_by, readyz_by  # it answered, with the old digest

    os.kill(running.process.pid, signal.SIGHUP)  # precompute runs again; new workers replace the old
    wait_until(lambda: set(answers(running.base, 1)) == {new}, 60, f"every answer from contents {new}")
    assert len(running.workers()) == 2


def test_hup_under_load_moves_to_a_new_model_without_a_failed_request(model_dir, tmp_path, start_gunicorn):
    from trainer import artifact

    folder = Path(shutil.copytree(model_dir, tmp_path / "served"))
    running = start_gunicorn(folder).wait_ready().wait_every_worker()
    old = artifact.read_digest(folder)
    load = Load(running.base)
    time.sleep(1)
    new = replace_model(folder, 8)
    os.kill(running.process.pid, signal.SIGHUP)
    wait_until(lambda: load.found[-8:] and set(load.found[-8:]) == {new, "ok"}, 60, "answers from the new model")
    time.sleep(1)
    found = load.stop()
    failed = [f for f in found if f not in (old, new, "ok")]
    assert not failed and len(found) >= 100, (len(found), failed[:5])
    readyz = requests.get(running.base + "/readyz", timeout=5).json()
    assert readyz["digest"] == new and readyz["reload_error"] is None
    assert running.process.poll() is None and len(running.workers()) == 2


def test_hup_to_a_model_that_cannot_be_served_keeps_the_old_one_serving(model_dir, tmp_path, start_gunicorn):
    """A broken new model: the master stays up, every request still succeeds from the old contents, and
    /readyz and /metrics say why; a HUP after the folder is mended moves to the mended contents."""
    from prometheus_client.parser import text_string_to_metric_families

    from trainer import artifact

    folder = Path(shutil.copytree(model_dir, tmp_path / "served"))
    running = start_gunicorn(folder).wait_ready().wait_every_worker()
    old = artifact.read_digest(folder)
    new = replace_model(folder, 9)
    with open(folder / artifact.INPUT_FILE, "r+b") as f:  # cut short, as by a copy that did not finish
        f.truncate(200)
    load = Load(running.base)
    time.sleep(0.5)
    os.kill(running.process.pid, signal.SIGHUP)
    reported = wait_until(lambda: requests.get(running.base + "/readyz", timeout=5).json()["reload_error"], 60,
                          "the failed reload reported by a new worker")
    time.sleep(1)
    found = load.stop()
    assert set(found) <= {old, "ok"} and len(found) >= 100, set(found)
    assert "input_vectors.npy" in reported["error"] and "meta.json records" in reported["error"], reported
    assert running.process.poll() is None and len(running.workers()) == 2
    assert "HUP: the model folder cannot be served" in (running.logs / "error.log").read_text()
    metrics = {s.name: s.value for family in text_string_to_metric_families(
        requests.get(running.base + "/metrics", timeout=5).text) for s in family.samples}
    assert metrics["skipgram_model_reload_failed"] == 1

    replace_model(folder, 9)  # the same contents, whole this time
    os.kill(running.process.pid, signal.SIGHUP)
    wait_until(lambda: set(answers(running.base, 1)) == {new}, 60, f"every answer from contents {new}")
    assert requests.get(running.base + "/readyz", timeout=5).json()["reload_error"] is None


def test_tables_beyond_the_first_start_budget_are_built_after_it_and_served_without_a_failure(model_dir, tmp_path,
                                                                                           start_gunicorn):
    """TABLES_MAX_COST 0: the first start builds no table (an approximate index instead); the later budget's
    tables are built in the background, then an automatic HUP serves them, while requests go on."""
    running = start_gunicorn(model_dir, SKIPGRAM_TABLES_MAX_COST="0",
                             SKIPGRAM_TABLES_LATER_MAX_COST="1e15").wait_ready()
    first = requests.get(running.base + "/readyz", timeout=5).json()
    assert first["precomputed"] == {"similar": False, "context": False} and first["index"]["type"] == "hnsw"
    load = Load(running.base)
    ready = wait_until(lambda: (body := requests.get(running.base + "/readyz", timeout=5).json())["precomputed"]
                       == {"similar": True, "context": True} and body, 60, "the tables served after the start")
    time.sleep(0.5)
    found = load.stop()
    assert set(found) <= {first["digest"], "ok"} and len(found) >= 50, set(found)
    assert ready["index"]["type"] == "flat" and ready["digest"] == first["digest"]
    log = (running.logs / "error.log").read_text()
    assert "building the tables within TABLES_LATER_MAX_COST in the background" in log
    assert "the later tables are built: HUP to serve them" in log and running.process.poll() is None
