"""GET /words (the vocabulary by prefix, most frequent first) and GET /map (a word and its neighbours by
PCA) through the Flask test client, checked against the published OpenAPI description and brute force."""
from __future__ import annotations

from urllib.parse import quote, urlencode

import numpy as np
import pytest

from service import arrays, words
from tests.service.conftest import SPECIAL_WORDS


def url(path: str, **params) -> str:
    return f"{path}?{urlencode(params, quote_via=quote)}"


def brute_force(vocabulary, prefix: str, limit: int) -> list[str]:
    return [w for w in vocabulary if w.startswith(prefix)][:limit]  # rows are in frequency order


# ------------------------------------------------------------------------------------------ /words

@pytest.mark.parametrize("prefix", ["", "w", "w1", "w12", "w599", "k", "q", "wo", "woman", "x", "x ", "100",
                                    "caf", "café", "na", "naï", "ש", "שלום", "日", "日本語", "emoji", "emoji🙂",
                                    "a+b", "W", "Caf", "cafe", "zz", "w5999"])
@pytest.mark.parametrize("limit", [1, 3, 10, 100])
def test_words_by_prefix_most_frequent_first(client, model, prefix, limit):
    body = client.get(url("/words", prefix=prefix, limit=limit)).body
    assert body == {"prefix": prefix, "limit": limit, "words": brute_force(model.words, prefix, limit)}


def test_words_default_to_the_ten_most_frequent(client, model):
    assert client.get("/words").body == {"prefix": "", "limit": 10, "words": list(model.words[:10])}
    assert client.get("/words?prefix=").body["words"] == list(model.words[:10])
    assert client.get("/words?prefix=w").body["words"] == ["woman"] + [f"w{i}" for i in range(9)]


def test_every_special_word_is_found_by_its_first_character(client, model):
    for word in SPECIAL_WORDS:
        assert word in client.get(url("/words", prefix=word[0], limit=100)).body["words"]


@pytest.mark.parametrize("query", ["prefix=%00", "prefix=%ff%fe", "prefix=%ED%A0%80", "prefix=%zz", "prefix=%",
                                   "prefix=%E2%80%AEw", "prefix=" + "a" * 100, "prefix=w%00"])
def test_hostile_prefixes_find_nothing(client, query):
    assert client.get(f"/words?{query}").body["words"] == []


@pytest.mark.parametrize("query, message", [
    ("prefix=" + "a" * 101, "prefix is longer than 100 characters"),
    ("prefix=" + "a" * 100_000, "prefix is longer than 100 characters"),
    ("prefix=a&prefix=b", "given 2 times"),
    ("limit=1&limit=2", "given 2 times"),
    *[(f"limit={quote(bad)}", "limit must be an integer from 1 to 100")
      for bad in ["0", "-1", "101", str(10**9), "9" * 5000, "abc", "1.5", "", " 5", "+5", "٣"]],
])
def test_bad_words_queries(client, query, message):
    response = client.get(f"/words?{query}")
    assert response.status_code == 400 and message in response.body["error"]


def test_a_prefix_as_long_as_the_longest_word_is_accepted(make_app, checked_client):
    client = checked_client(make_app(MAX_WORD_LENGTH=4))
    assert client.get("/words?prefix=quee").body["words"] == ["queen"]
    assert client.get("/words?prefix=queen").status_code == 400


def test_the_prefix_structure_matches_brute_force_on_shared_prefixes():
    rng = np.random.default_rng(3)
    alphabet = ["a", "b", "é", "日", "🙂", "a\u0301"]  # one to four UTF-8 bytes, and a combining accent
    vocabulary = list(dict.fromkeys("".join(rng.choice(alphabet, size=rng.integers(1, 6))) for _ in range(3000)))
    table = words.WordTable(words.build(vocabulary))
    table.check(len(vocabulary))
    prefixes = {""} | {w[:n] for w in vocabulary[::37] for n in range(1, len(w) + 1)} | {"c", "é日", "🙂🙂🙂🙂🙂🙂"}
    for prefix in sorted(prefixes):
        for limit in (1, 7, 5000):  # 5000: the whole range; 1 and 7: its lowest rows picked from a large range
            assert table.words(table.with_prefix(prefix, limit)) == brute_force(vocabulary, prefix, limit), prefix


def test_the_byte_order_is_checked():
    table = words.build(["b", "a", "c", "ab"])
    assert [table["sorted"].tolist()] == [[1, 3, 0, 2]]
    for damaged in ([1, 0, 3, 2], [1, 3, 0, 0], [1, 3, 0, 9]):
        with pytest.raises(words.WordTableError, match="byte order"):
            words.WordTable({**table, "sorted": np.array(damaged, np.int32)}).check(4)


# -------------------------------------------------------------------------------------------- /map

def expected_map(model, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """PCA by the covariance's eigenvectors (not the SVD the service uses): coordinates (B, 2), shares (2,)."""
    x = model.input_vectors[[model.index[w] for w in names]].astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x -= x.mean(axis=0)
    values, vectors = np.linalg.eigh(x.T @ x)
    top = np.argsort(values)[::-1][:2]
    return x @ vectors[:, top], values[top] / values.sum()


@pytest.mark.parametrize("word", ["king", "café", "日本語", "w17"])
@pytest.mark.parametrize("k", [2, 5, 10, 50])
def test_map_places_the_neighbours_of_similar_by_pca(client, model, word, k):
    body = client.get(url("/map", word=word, k=k)).body
    similar = client.get(url("/similar", word=word, k=k)).body["neighbors"]
    assert body["word"] == word and body["k"] == k
    assert [{"word": n["word"], "score": n["score"]} for n in body["neighbors"]] == similar
    coords = np.array([[body["x"], body["y"]]] + [[n["x"], n["y"]] for n in body["neighbors"]])
    expected, shares = expected_map(model, [word] + [n["word"] for n in similar])
    signs = np.sign((coords * expected).sum(axis=0))  # eigenvectors come with either sign
    np.testing.assert_allclose(coords, expected * signs, atol=1e-5)
    np.testing.assert_allclose(body["explained"], shares, atol=1e-6)
    assert (coords[np.abs(coords).argmax(axis=0), [0, 1]] > 0).all()  # each axis points to its largest value


def test_map_answers_the_same_every_time(client):
    assert len({client.get("/map?word=queen&k=7").data for _ in range(3)}) == 1


def test_map_of_one_neighbour_has_one_axis(client):
    body = client.get("/map?word=king&k=1").body
    assert body["y"] == 0 and body["neighbors"][0]["y"] == 0 and body["explained"] == [1.0, 0.0]
    assert body["x"] == pytest.approx(-body["neighbors"][0]["x"]) and body["neighbors"][0]["x"] > 0


def test_map_with_k_beyond_the_vocabulary_places_every_word(client, model):
    body = client.get(f"/map?word=king&k={model.vocab_size + 10}").body
    assert len(body["neighbors"]) == model.vocab_size - 1
    assert sum(body["explained"]) <= 1


def test_map_of_an_unknown_word_is_404(client):
    response = client.get("/map?word=nope")
    assert response.status_code == 404 and response.body["error"] == "unknown word: nope"


def test_pca_of_repeated_or_single_rows_is_zeros():
    for x in (np.ones((4, 3)), np.ones((1, 3)), np.zeros((2, 1))):
        coords, share = arrays.pca_2d(x)
        assert coords.shape == (len(x), 2) and not coords.any() and not share.any()


@pytest.mark.parametrize("settings", [{"TABLES_MAX_COST": 0}, {"INDEX": "hnsw"}], ids=["searched", "hnsw"])
def test_map_places_what_similar_answers_with_any_index(make_app, checked_client, settings):
    client = checked_client(make_app(**settings))
    body = client.get("/map?word=queen&k=8").body
    similar = client.get("/similar?word=queen&k=8").body["neighbors"]
    assert [{"word": n["word"], "score": n["score"]} for n in body["neighbors"]] == similar
