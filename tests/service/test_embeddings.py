"""The answers are the right ones: neighbours against brute-force numpy, analogies against gensim,
context probabilities against a numpy softmax, the approximate indexes against the exact one."""
from __future__ import annotations

from urllib.parse import quote

import numpy as np
import pytest

from service import arrays, derived, precompute, settings
from service.embeddings import Embeddings
from service.settings import SettingsError
from trainer import artifact


def embeddings(model, **overrides) -> Embeddings:
    """Embeddings over `model` with its derived data prepared (or read back) under the given settings."""
    config = settings.load({"MODEL_DIR": model.path, **overrides})
    return Embeddings(model, derived.prepare(model, config), config)


def cosine_ranking(vectors: np.ndarray, query: np.ndarray, exclude=()) -> list[tuple[int, float]]:
    """Brute force in float64: every row by cosine to `query`, best first."""
    vectors = vectors.astype(np.float64)
    scores = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    return [(int(i), float(scores[i])) for i in np.argsort(-scores, kind="stable") if i not in exclude]


def assert_same_ranking(got: list[dict], words, expected: list[tuple[int, float]]):
    assert [n["word"] for n in got] == [words[i] for i, _ in expected[:len(got)]]
    np.testing.assert_allclose([n["score"] for n in got], [s for _, s in expected[:len(got)]], atol=1e-5)


@pytest.fixture(scope="module")
def untabled_client(make_app, checked_client):
    return checked_client(make_app(MAX_K=1000, TABLES_MAX_COST=0, INDEX="flat"))


@pytest.fixture(params=["tables", "per-query"])
def either_client(request, client, untabled_client):
    """The same questions answered from the precomputed tables and by searching per query."""
    return client if request.param == "tables" else untabled_client


@pytest.mark.parametrize("word", ["king", "queen", "café", "w0", "w300", "w587"])
def test_similar_equals_brute_force(either_client, model, word):
    got = either_client.get(f"/similar?word={quote(word)}&k=25").body["neighbors"]
    row = model.index[word]
    expected = cosine_ranking(model.input_vectors, model.input_vectors[row], exclude={row})
    assert len(got) == 25
    assert_same_ranking(got, model.words, expected)


def test_similar_to_vector_equals_brute_force(client, model):
    query = np.random.default_rng(5).standard_normal(model.dim)
    got = client.post("/similar", json={"vector": query.tolist(), "k": 30}).body["neighbors"]
    assert_same_ranking(got, model.words, cosine_ranking(model.input_vectors, query))


@pytest.mark.parametrize("positive, negative", [
    (["king", "woman"], ["man"]), (["w1", "w2", "w3"], []), ([], ["w7"]), (["w4"], ["w5", "w6"]),
    (["queen", "queen"], ["w9"]),
])
def test_analogy_equals_gensim(client, model, positive, negative):
    from gensim.models import KeyedVectors

    vectors = KeyedVectors(model.dim)
    vectors.add_vectors(list(model.words), np.asarray(model.input_vectors))
    expected = vectors.most_similar(positive=positive, negative=negative, topn=20)
    query = "&".join(f"{name}={quote(','.join(words))}" for name, words in
                     (("positive", positive), ("negative", negative)) if words)
    got = client.get(f"/similar?{query}&k=20").body["neighbors"]
    assert [n["word"] for n in got] == [w for w, _ in expected]
    np.testing.assert_allclose([n["score"] for n in got], [s for _, s in expected], atol=1e-5)


def numpy_softmax(model, word: str) -> np.ndarray:
    scores = model.output_vectors.astype(np.float64) @ model.input_vectors[model.index[word]].astype(np.float64)
    scores -= scores.max()
    return np.exp(scores) / np.exp(scores).sum()


@pytest.mark.parametrize("word", ["king", "日本語", "w42"])
def test_context_probs_equal_numpy_softmax(either_client, model, word):
    got = either_client.get(f"/context-probs?word={quote(word)}&k=20").body["context"]
    probs = numpy_softmax(model, word)
    order = np.argsort(-probs, kind="stable")[:20]
    assert [c["word"] for c in got] == [model.words[i] for i in order]
    np.testing.assert_allclose([c["prob"] for c in got], probs[order], rtol=1e-5)


def test_context_probs_over_the_whole_vocabulary_sum_to_one(either_client, model):
    got = either_client.get(f"/context-probs?word=queen&k={model.vocab_size}").body["context"]
    assert len(got) == model.vocab_size and len({c["word"] for c in got}) == model.vocab_size
    assert sum(c["prob"] for c in got) == pytest.approx(1.0, abs=1e-6)


def test_log_sum_exp_is_stable_for_large_scores():
    scores = np.array([[1000.0, 999.0, -1000.0], [-1000.0, -1001.0, -3000.0]], dtype=np.float32)
    expected = [1000 + np.log1p(np.exp(-1.0)), -1000 + np.log1p(np.exp(-1.0))]
    np.testing.assert_allclose(arrays.log_sum_exp(scores), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("scale", [0.1, 5.0, 20.0, 100.0])
def test_log_sum_exp_matches_float64_within_float32_precision(scale):
    """Rows of 100,000 float32 scores, small to large: the float32 computation stays within 1e-6 of the
    float64 one, with or without the shift (scale 100 needs it)."""
    scores = (np.random.default_rng(3).standard_normal((4, 100_000)) * scale).astype(np.float32)
    reference = np.array([np.logaddexp.reduce(row) for row in scores.astype(np.float64)])
    np.testing.assert_allclose(arrays.log_sum_exp(scores), reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size, width, k", [(5, 10, 3), (7, 1000, 10), (3, 20_000, 100), (4, 3203, 7),
                                            (2, 50, 50), (6, 5000, 1)])
def test_top_k_matches_a_full_sort(size, width, k):
    scores = np.random.default_rng(width).standard_normal((size, width)).astype(np.float32)
    ties = np.round(scores, 1)  # many equal values
    for matrix in (scores, ties):
        ids, values = arrays.top_k(matrix, k)
        np.testing.assert_array_equal(values, -np.sort(-matrix, axis=1)[:, :k])
        np.testing.assert_array_equal(np.take_along_axis(matrix, ids.astype(np.int64), 1), values)
        assert all(len(set(row)) == k for row in ids.tolist())


def clustered_model(path, size=3000, dim=32, clusters=60, seed=3, noise=0.8):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    vectors = centres[rng.integers(0, clusters, size)] + noise * rng.standard_normal((size, dim))
    return artifact.load(artifact.save(path, [f"c{i}" for i in range(size)], np.ones(size, np.int64),
                                       vectors, None, {"objective": None}))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_at_10(tmp_path, kind):
    model = clustered_model(tmp_path / "clustered")
    cache = {"CACHE_DIR": tmp_path / "cache", "HNSW_EF_SEARCH": 64}
    exact = embeddings(model, **cache, INDEX="flat", TABLES_MAX_COST=0)
    approximate = embeddings(model, **cache, INDEX=kind)
    assert approximate.describe()["index"]["type"] == kind
    words = model.words[::6]
    found = [exact.similar(word, 10) for word in words]
    recall = np.mean([len({w for w, _ in truth} & {w for w, _ in approximate.similar(word, 10)}) / 10
                      for word, truth in zip(words, found)])
    print(f"{kind} recall@10 over {len(words)} words of {model.vocab_size}: {recall:.4f}")
    assert recall >= 0.95
    assert list((tmp_path / "cache").glob(f"*/{kind}-*.faiss"))  # kept for the next worker...
    entry = derived.cache_folder(model, tmp_path / "cache")
    reread = Embeddings(model, derived.open_prepared(model, settings.load(
        {"MODEL_DIR": model.path, **cache, "INDEX": kind})))  # ...which maps it
    assert reread.derived.index.thisown  # the Python object owns the index: it cannot be freed under us
    assert reread.derived.folder == entry
    assert [reread.similar(word, 10) for word in words] == [approximate.similar(word, 10) for word in words]
    # scores are exact cosines whatever found the neighbours
    for word in words[:20]:
        row = model.index[word]
        expected = dict(cosine_ranking(model.input_vectors, model.input_vectors[row], exclude={row}))
        for neighbour, score in approximate.similar(word, 10):
            assert score == pytest.approx(expected[model.index[neighbour]], abs=1e-5)


def test_tables_are_kept_and_a_damaged_one_is_rebuilt(tmp_path, model):
    first = embeddings(model, CACHE_DIR=tmp_path, MAX_K=20).similar("king", 20)
    files = sorted(tmp_path.glob("*/similar-top20-*.npy"))
    assert len(files) == 2
    files[0].write_bytes(files[0].read_bytes()[:100])  # truncated
    assert embeddings(model, CACHE_DIR=tmp_path, MAX_K=20).similar("king", 20) == first
    assert files[0].stat().st_size > 100


def test_an_unwritable_cache_still_serves(tmp_path, model):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    served = embeddings(model, CACHE_DIR=blocker / "cache", MAX_K=5)
    assert served.describe()["precomputed"] == {"similar": True, "context": True}
    assert len(served.similar("king", 5)) == 5


@pytest.mark.parametrize("config", [{"MAX_K": 0}, {"MAX_K": "ten"}, {"MAX_K": True}, {"INDEX": "annoy"},
                                    {"MODEL_DIR": ""}, {"TABLES_MAX_COST": -1}, {"HNSW_M": 1.5},
                                    {"IVF_NPROBE": -1}, {"IVF_NLIST": "many"}, {"IVF_RECALL": 0},
                                    {"IVF_RECALL": 1.5}, {"IVF_RECALL": "most"}, {"IVF_RECALL": float("nan")}, {"SERVING": {"digest": 12}}, {"RELOAD_ERROR": "bad"}])
def test_unusable_settings_are_refused(make_app, config):
    with pytest.raises(SettingsError):
        make_app(**config)


def test_precompute_command_builds_the_cache_and_reports_problems(tmp_path, model_dir, monkeypatch, capsys):
    monkeypatch.setenv("SKIPGRAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SKIPGRAM_INDEX", "hnsw")
    assert precompute.main([str(model_dir), "--threads", "2"]) == 0
    names = {path.name for path in (tmp_path / "cache").glob("*/*")}
    assert {"context-lse.npy", "hnsw-m16-efc80.faiss"} <= names
    assert not any(name.startswith("similar") for name in names)  # HNSW serves similar-by-word
    assert precompute.main([str(tmp_path / "nowhere")]) == 1
    assert "model folder not found" in capsys.readouterr().err


@pytest.fixture(scope="module", params=[1, 10], ids=["planted corpus", "10 planted corpora"])
def trained_model(request, tmp_path_factory):
    """A model trained by the project's trainer on tests/planted.py's corpus; with n > 1, n such corpora
    with words of their own (p3g0m1...), lines shuffled: n times the vocabulary, the same structure."""
    from tests.planted import write_planted_corpus
    from trainer.__main__ import main as trainer_main

    folder, copies = tmp_path_factory.mktemp("trained"), request.param
    lines = []
    for j in range(copies):
        text = write_planted_corpus(folder / "planted.txt", seed=j).read_text().splitlines()
        lines += [" ".join(f"p{j}{w}" for w in line.split()) for line in text] if copies > 1 else text
    np.random.default_rng(0).shuffle(lines)
    (folder / "corpus.txt").write_text("\n".join(lines) + "\n")
    assert trainer_main(["train", str(folder / "corpus.txt"), "--out", str(folder / "model"), "--dim", "24",
                         "--epochs", "4", "--min-count", "1", "--quiet"]) == 0
    return artifact.load(folder / "model")


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_recall_at_10_on_a_trained_model(trained_model, tmp_path, kind):
    """Default settings: IVF's dial tuned on a sample of the model's words must hold over all of them.
    (These models' words are well apart: the dial tuned is 1 list of their 2 or 20 and 50 candidates; the
    dial of a model whose neighbours spread over many lists is tested in test_derived.)"""
    model = trained_model
    exact = embeddings(model, CACHE_DIR=tmp_path, INDEX="flat", TABLES_MAX_COST=0)
    approximate = embeddings(model, CACHE_DIR=tmp_path, INDEX=kind)
    found = {word: approximate.similar(word, 10) for word in model.words}
    recall = np.mean([len({w for w, _ in exact.similar(word, 10)} & {w for w, _ in found[word]}) / 10
                      for word in model.words])
    print(f"{kind} {approximate.describe()['index']} recall@10 over all {model.vocab_size} words: {recall:.4f}")
    assert recall >= 0.95
    for word in model.words[:50]:  # scores are exact cosines whatever found the neighbours
        row = model.index[word]
        expected = dict(cosine_ranking(model.input_vectors, model.input_vectors[row], exclude={row}))
        for neighbour, score in found[word]:
            assert score == pytest.approx(expected[model.index[neighbour]], abs=1e-5)
