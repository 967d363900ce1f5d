"""Every endpoint through the Flask test client: answers, errors, and hostile inputs, all checked against
the published OpenAPI description."""
from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import pytest


def url(path: str, **params) -> str:
    return f"{path}?{urlencode(params, quote_via=quote)}" if params else path


# --------------------------------------------------------------------------------------- answers

def test_healthz_and_readyz(client, model):
    assert client.get("/healthz").body == {"status": "ok"}
    ready = client.get("/readyz").body
    assert ready["status"] == "ready" and ready["model"] == "small"
    assert (ready["vocab_size"], ready["dim"]) == (model.vocab_size, model.dim)
    assert ready["objective"] == "negative-sampling"
    assert ready["index"] == {"type": "flat", "exact": True}
    assert ready["context_probs"] is True and ready["precomputed"] == {"similar": True, "context": True}
    assert ready["limits"]["max_k"] == 1000


def test_openapi_is_served_as_json_with_this_instances_limits(client):
    doc = client.get("/openapi.json").body
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["parameters"]["k"]["schema"]["maximum"] == 1000
    assert {"/vector", "/similar", "/context-probs", "/healthz", "/readyz", "/openapi.json"} <= set(doc["paths"])


def test_get_vector_round_trips_any_word(client, model, special_word):
    body = client.get(url("/vector", word=special_word)).body
    assert body["word"] == special_word
    assert body["vector"] == model.input_vectors[model.index[special_word]].tolist()


def test_post_vector_lists_known_and_missing_words(client, model):
    words = ["king", "nope", "日本語", "king", "nope", "\ud800", "also-not"]
    body = client.post("/vector", json={"words": words}).body
    assert set(body["vectors"]) == {"king", "日本語"}
    assert body["vectors"]["king"] == model.input_vectors[model.index["king"]].tolist()
    assert body["missing"] == ["nope", "\ud800", "also-not"]
    assert client.post("/vector", json={"words": []}).body == {"vectors": {}, "missing": []}


def test_similar_by_word_shape(client):
    body = client.get(url("/similar", word="king", k=5)).body
    assert body["word"] == "king" and body["k"] == 5 and len(body["neighbors"]) == 5
    scores = [n["score"] for n in body["neighbors"]]
    assert scores == sorted(scores, reverse=True)
    assert "king" not in [n["word"] for n in body["neighbors"]]
    assert len(client.get(url("/similar", word="king")).body["neighbors"]) == 10  # default k


def test_similar_k_beyond_vocabulary_returns_every_other_word(client, model):
    body = client.get(url("/similar", word="king", k=1000)).body
    assert len(body["neighbors"]) == model.vocab_size - 1


def test_analogy_finds_the_planted_answer(client):
    body = client.get(url("/similar", positive="king,woman", negative="man", k=3)).body
    assert body["positive"] == ["king", "woman"] and body["negative"] == ["man"]
    assert body["neighbors"][0]["word"] == "queen"
    assert not {"king", "woman", "man"} & {n["word"] for n in body["neighbors"]}
    only_negative = client.get(url("/similar", negative="man", k=3)).body
    assert only_negative["positive"] == [] and len(only_negative["neighbors"]) == 3


def test_post_similar_with_a_words_own_vector_finds_the_word_first(client, model):
    vector = model.input_vectors[model.index["queen"]].tolist()
    body = client.post("/similar", json={"vector": vector, "k": 3}).body
    assert body["k"] == 3 and body["neighbors"][0]["word"] == "queen"
    assert body["neighbors"][0]["score"] == pytest.approx(1.0, abs=1e-6)
    assert client.post("/similar", json={"vector": [1] * model.dim}).body["k"] == 10  # integers, default k


def test_post_similar_accepts_huge_finite_values(client, model):
    vector = [1e300] + [0.0] * (model.dim - 1)
    assert len(client.post("/similar", json={"vector": vector, "k": 2}).body["neighbors"]) == 2


def test_context_probs_shape(client):
    body = client.get(url("/context-probs", word="queen", k=4)).body
    assert body["word"] == "queen" and body["k"] == 4 and body["objective"] == "negative-sampling"
    probs = [c["prob"] for c in body["context"]]
    assert len(probs) == 4 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1


def test_context_probs_unavailable_without_output_vectors(imported_model_dir, cache_dir, conforms):
    from service import create_app

    app = create_app({"MODEL_DIR": imported_model_dir, "CACHE_DIR": cache_dir})
    client = app.test_client()
    response = client.get(url("/context-probs", word="king"))
    assert response.status_code == 409 and "output vectors" in conforms(response, "GET", "/context-probs")["error"]
    ready = conforms(client.get("/readyz"), "GET", "/readyz")
    assert ready["context_probs"] is False and ready["objective"] is None
    assert ready["precomputed"]["context"] is False
    assert client.get(url("/similar", word="king")).status_code == 200


# ------------------------------------------------------------------------------------------ errors

WORD_ENDPOINTS = ["/vector", "/similar", "/map", "/context-probs"]
K_ENDPOINTS = ["/similar", "/map", "/context-probs"]


@pytest.mark.parametrize("path", WORD_ENDPOINTS)
@pytest.mark.parametrize("query, status", [
    ("", 400),  # missing word
    ("word=", 400),
    ("word=" + "a" * 100_000, 400),
    ("word=" + "a" * 101, 400),
    ("word=king&word=queen", 400),  # repeated
    ("word=nope", 404),
    ("word=%00", 404), ("word=king%00", 404), ("word=%07%1b", 404),  # NUL and control characters
    ("word=%E2%80%AEking", 404),  # right-to-left override
    ("word=%zz", 404), ("word=%", 404), ("word=%e", 404), ("word=%ff%fe", 404),  # malformed escapes
    ("word=%ED%A0%80", 404),  # an encoded surrogate: not UTF-8
])
def test_hostile_words(client, path, query, status):
    assert client.get(f"{path}?{query}").status_code == status


@pytest.mark.parametrize("path", K_ENDPOINTS)
@pytest.mark.parametrize("k", ["0", "-1", "1001", str(10**9), "9" * 5000, "abc", "1.5", "", " 5", "+5",
                               "5 ", "1e2", "0x10", "٣", "²", "true", "null"])
def test_bad_k(client, path, k):
    response = client.get(f"{path}?word=king&k={quote(k)}")
    assert response.status_code == 400 and "k must be" in response.body["error"]


@pytest.mark.parametrize("path", K_ENDPOINTS)
def test_repeated_k(client, path):
    assert client.get(f"{path}?word=king&k=1&k=2").status_code == 400


@pytest.mark.parametrize("query", [
    "word=king&positive=queen", "positive=", "negative=", "positive=king,,man", "positive=,",
    "positive=" + ",".join(["king"] * 1001), "positive=" + "a" * 101, "positive=king&positive=man",
])
def test_bad_analogies(client, query):
    assert client.get(f"/similar?{query}").status_code == 400


def test_analogy_with_unknown_word_is_404_naming_it(client):
    response = client.get(url("/similar", positive="king,zzz", negative="man"))
    assert response.status_code == 404 and "zzz" in response.body["error"]


def test_analogy_that_cancels_out_is_400(client):
    assert client.get(url("/similar", positive="king", negative="king")).status_code == 400


DEEP = "[" * 10_000 + "]" * 10_000
BAD_BODIES = [
    b"", b"{}", b"not json", b"{", b"[]", b'"words"', b"1", b"null", b"true", DEEP.encode(),
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000, b"\xff\xfe\x00", b'{"words": NaN}', b'{"words": [Infinity]}',
    b'{"words": ["a"], "extra": 1}', b'{"vector": [1], "words": ["a"]}',
]


@pytest.mark.parametrize("path", ["/vector", "/similar"])
@pytest.mark.parametrize("data", BAD_BODIES, ids=lambda b: repr(b[:20]))
def test_bad_bodies(client, path, data):
    assert client.post(path, data=data, content_type="application/json").status_code == 400


@pytest.mark.parametrize("path", ["/vector", "/similar"])
@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx"])
def test_wrong_content_type(client, path, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    assert client.post(path, data=b'{"words": ["king"]}', headers=headers).status_code == 415


@pytest.mark.parametrize("path", ["/vector", "/similar"])
def test_body_over_the_limit(make_app, conforms, path):
    client = make_app(MAX_CONTENT_LENGTH=1000).test_client()
    body = json.dumps({"words": ["king"] * 300})
    response = client.post(path, data=body, content_type="application/json")
    assert response.status_code == 413
    conforms(response, "POST", path)


@pytest.mark.parametrize("path", ["/vector", "/similar"])
def test_a_10_mb_body_is_refused(client, path):
    data = b'{"words": ["' + b"a" * (10 << 20) + b'"]}'
    assert client.post(path, data=data, content_type="application/json").status_code == 413


def test_hostile_words_in_a_body_are_only_unknown(client):
    words = ["\x00", "king\x00", "\x07\x1b", "\u202eking", "\u200fשלום"]  # NUL, control, right-to-left
    assert client.post("/vector", json={"words": words}).body == {"vectors": {}, "missing": words}


@pytest.mark.parametrize("words", [
    "king", {"a": 1}, None, [1], [None], [["king"]], [""], ["a" * 101], ["a" * 100_000], ["king"] * 1001,
])
def test_bad_word_lists(client, words):
    assert client.post("/vector", json={"words": words}).status_code == 400


@pytest.mark.parametrize("make", [
    lambda d: [], lambda d: [1.0] * (d - 1), lambda d: [1.0] * (d + 1), lambda d: ["1"] * d,
    lambda d: [True] * d, lambda d: [None] * d, lambda d: [[1.0]] * d, lambda d: {"0": 1.0},
    lambda d: "1,2", lambda d: [0.0] * d,
])
def test_bad_vectors(client, model, make):
    assert client.post("/similar", json={"vector": make(model.dim)}).status_code == 400


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 400])
def test_non_finite_vector_numbers(client, model, raw):
    data = '{"vector": [' + ",".join([raw] + ["1.0"] * (model.dim - 1)) + "]}"
    assert client.post("/similar", data=data, content_type="application/json").status_code == 400


@pytest.mark.parametrize("k", [0, -1, 10**9, "abc", 1.5, 10.0, True, None, [1], "10"])
def test_bad_k_in_body(client, model, k):
    assert client.post("/similar", json={"vector": [1.0] * model.dim, "k": k}).status_code == 400


@pytest.mark.parametrize("method, path", [
    ("PUT", "/vector"), ("DELETE", "/vector"), ("PATCH", "/similar"), ("POST", "/context-probs"),
    ("POST", "/healthz"), ("POST", "/readyz"), ("DELETE", "/openapi.json"), ("OPTIONS", "/similar"),
])
def test_wrong_method(client, method, path):
    response = client.request(method, path)
    assert response.status_code == 405 and "GET" in response.headers["Allow"]


@pytest.mark.parametrize("path", ["/nope", "/vector/", "/similar/king", "/%00", "/.." + "/x" * 1000, "/index.html",
                                  "/static/nope.js", "/static/../api.py", "/static/%2e%2e/api.py"])
def test_unknown_paths(client, path):
    assert client.get(path).status_code == 404


def test_limits_come_from_the_environment(monkeypatch, model_dir, cache_dir, conforms):
    from service import create_app

    monkeypatch.setenv("MODEL_DIR", str(model_dir))
    monkeypatch.setenv("SKIPGRAM_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("SKIPGRAM_MAX_K", "5")
    monkeypatch.setenv("SKIPGRAM_MAX_WORD_LENGTH", "4")
    monkeypatch.setenv("SKIPGRAM_MAX_BATCH_WORDS", "2")
    monkeypatch.setenv("SKIPGRAM_MAX_CONTENT_LENGTH", "100")
    client = create_app().test_client()
    assert client.get("/similar?word=king&k=5").status_code == 200
    assert client.get("/similar?word=king&k=6").status_code == 400
    assert client.get("/similar?word=king").get_json()["k"] == 5  # the default k is capped too
    assert client.get("/vector?word=queen").status_code == 400  # 5 characters
    assert client.post("/vector", json={"words": ["a", "b", "c"]}).status_code == 400
    assert client.post("/vector", json={"words": ["abcd"] * 2}).status_code == 200
    assert client.post("/vector", json={"words": ["abcd"] * 2, "pad": " " * 100}).status_code == 413
    assert client.get("/readyz").get_json()["limits"] == {
        "max_k": 5, "max_word_length": 4, "max_batch_words": 2, "max_content_length": 100}
    doc = client.get("/openapi.json").get_json()
    assert doc["components"]["parameters"]["k"]["schema"]["maximum"] == 5
