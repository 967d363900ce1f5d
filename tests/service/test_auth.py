"""The optional API key: its settings, and every endpoint of a keyed server under real gunicorn with the key,
without it and with a wrong one; the probes and /metrics stay open, and the key never reaches the logs."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import requests

from service import settings
from tests.service.conftest import Gunicorn
from tests.service.test_gunicorn import wait_until

KEY = "k3y-Of.the_service~42"
OPEN = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


# --------------------------------------------------------------------------------------------- settings

def test_the_key_is_read_as_given_from_the_environment_or_a_file(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPGRAM_API_KEY", "0123456789")  # digits: a string still, not a JSON number
    assert settings.load({"MODEL_DIR": model_dir})["API_KEY"] == "0123456789"
    monkeypatch.delenv("SKIPGRAM_API_KEY")
    (tmp_path / "key").write_text(KEY + "\n")  # as `echo KEY > file` writes it
    monkeypatch.setenv("SKIPGRAM_API_KEY_FILE", str(tmp_path / "key"))
    assert settings.load({"MODEL_DIR": model_dir})["API_KEY"] == KEY
    monkeypatch.delenv("SKIPGRAM_API_KEY_FILE")
    assert settings.load({"MODEL_DIR": model_dir})["API_KEY"] is None


@pytest.mark.parametrize("env, file_text, message", [
    ({"SKIPGRAM_API_KEY": KEY, "SKIPGRAM_API_KEY_FILE": "{file}"}, KEY, "are both set"),
    ({"SKIPGRAM_API_KEY": ""}, None, "is empty"),
    ({"SKIPGRAM_API_KEY_FILE": "{file}"}, "\n", "is empty"),
    ({"SKIPGRAM_API_KEY": "two words"}, None, "printable ASCII without spaces"),
    ({"SKIPGRAM_API_KEY": "cl\xe9"}, None, "printable ASCII without spaces"),
    ({"SKIPGRAM_API_KEY_FILE": "{file}"}, "line one\nline two\n", "printable ASCII without spaces"),
    ({"SKIPGRAM_API_KEY_FILE": "{file}.missing"}, None, "cannot read the API key file"),
])
def test_an_unusable_key_setting_is_refused_without_quoting_the_key(model_dir, tmp_path, monkeypatch, env,
                                                                    file_text, message):
    if file_text is not None:
        (tmp_path / "key").write_text(file_text)
    for name, value in env.items():
        monkeypatch.setenv(name, value.replace("{file}", str(tmp_path / "key")))
    with pytest.raises(settings.SettingsError, match=message) as raised:
        settings.load({"MODEL_DIR": model_dir})
    assert "two words" not in str(raised.value) and "line one" not in str(raised.value)


# ------------------------------------------------------------------------------------------ the server

@pytest.fixture(scope="module")
def keyed(model_dir, tmp_path_factory):
    """The small model under gunicorn with KEY in a file, as container secrets are mounted."""
    logs = tmp_path_factory.mktemp("keyed")
    (logs / "key").write_text(KEY + "\n")
    running = Gunicorn(model_dir, logs, SKIPGRAM_API_KEY_FILE=str(logs / "key")).wait_ready()
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def examples(model):
    """One request (method, path -> requests kwargs) that succeeds for every operation needing the key."""
    vector = model.input_vectors[0].tolist()
    return {("GET", "/openapi.json"): ("/openapi.json", {}),
            ("GET", "/vector"): ("/vector?word=king", {}),
            ("POST", "/vector"): ("/vector", {"json": {"words": ["king", "nope"]}}),
            ("GET", "/similar"): ("/similar?word=king&k=3", {}),
            ("GET", "/map"): ("/map?word=king&k=3", {}),
            ("GET", "/words"): ("/words?prefix=k&limit=3", {}),
            ("POST", "/similar"): ("/similar", {"json": {"vector": vector, "k": 2}}),
            ("GET", "/context-probs"): ("/context-probs?word=king&k=3", {})}


def call(keyed, conforms, method: str, path: str, authorization: str | None = None, **kwargs):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.request(method, keyed.base + path, headers=headers, timeout=10, **kwargs)
    adapted = SimpleNamespace(status_code=response.status_code, data=response.content,
                              mimetype=response.headers.get("Content-Type", "").split(";")[0])
    return response, conforms(adapted, method, path.split("?")[0])


def test_every_operation_wants_the_key_and_answers_with_it(keyed, conforms, examples):
    response, doc = call(keyed, conforms, "GET", "/openapi.json", f"Bearer {KEY}")
    assert doc["security"] == [{"bearer": []}]  # the served document requires it
    operations = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert operations - OPEN == set(examples)  # an operation added must be added here
    wrong = "Bearer " + KEY[:-1] + chr(ord(KEY[-1]) ^ 1)  # same length, last character off
    for (method, _), (path, kwargs) in examples.items():
        assert call(keyed, conforms, method, path, f"Bearer {KEY}", **kwargs)[0].status_code == 200, path
        assert call(keyed, conforms, method, path, f"bearer   {KEY}", **kwargs)[0].status_code == 200, path
        for authorization, challenge in [(None, "Bearer"), (wrong, 'Bearer error=invalid_token'),
                                         (f"Basic {KEY}", "Bearer"), ("Bearer", "Bearer"), (KEY, "Bearer"),
                                         (f"Bearer {KEY} ", None), (f"Bearer {KEY}x", None)]:
            response, body = call(keyed, conforms, method, path, authorization, **kwargs)
            if challenge is None:  # surrounding spaces are forgiven, an extra character is not
                assert response.status_code == (200 if authorization.endswith(" ") else 401), authorization
                continue
            assert response.status_code == 401, (path, authorization)
            assert response.headers["WWW-Authenticate"] == challenge and "key" in body["error"]


def test_probes_and_metrics_need_no_key_and_other_paths_do(keyed, conforms):
    for method, path in OPEN:
        assert requests.request(method, keyed.base + path, timeout=10).status_code == 200, path
    assert call(keyed, conforms, "GET", "/no/such/path")[0].status_code == 401  # nothing told about paths
    assert call(keyed, conforms, "GET", "/no/such/path", f"Bearer {KEY}")[0].status_code == 404
    assert call(keyed, conforms, "PUT", "/vector", f"Bearer {KEY}")[0].status_code == 405


def test_the_page_and_its_files_need_no_key(keyed):
    """The explorer page asks for the key itself: it and its files are served to anyone."""
    for path, status in [("/", 200), ("/?word=king", 200), ("/static/explorer.js", 200),
                         ("/static/explorer.css", 200), ("/static/nope.js", 404)]:
        response = requests.get(keyed.base + path, timeout=10)
        assert response.status_code == status and "WWW-Authenticate" not in response.headers, path


def test_refusals_are_counted_and_logged_and_the_key_is_in_no_log(keyed):
    requests.get(f"{keyed.base}/similar?word=king", headers={"X-Request-ID": "refused-1"}, timeout=10)
    requests.get(f"{keyed.base}/similar?word=king",
                 headers={"X-Request-ID": "refused-2", "Authorization": f"Bearer {KEY[::-1]}"}, timeout=10)
    def refused() -> list | None:
        found = [line for line in keyed.access_lines() if line["request_id"] in ("refused-1", "refused-2")]
        return found if len(found) == 2 else None
    lines = wait_until(refused, 10, "both access lines")
    assert [(line["route"], line["status"]) for line in lines] == [("/similar", 401)] * 2
    metrics = requests.get(f"{keyed.base}/metrics", timeout=10).text
    assert 'skipgram_requests_total{endpoint="/similar",method="GET",status="401"}' in metrics
    logs = (keyed.logs / "access.log").read_text() + (keyed.logs / "error.log").read_text()
    assert KEY not in logs and KEY[::-1] not in logs
    assert all(json.loads(line) for line in (keyed.logs / "access.log").read_text().splitlines())
