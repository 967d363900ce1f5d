"""Tests of trainer.evaluate: agreement with gensim on planted vectors, hand-checked accounting and ranks, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from trainer import artifact, cli
from trainer.evaluate import average_ranks, evaluate_analogies, evaluate_word_pairs, spearman

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"
FAST = settings(deadline=None, max_examples=40, database=None)


def _gensim_vectors(model):
    """The model's input vectors as gensim KeyedVectors, same words, same row order."""
    keyedvectors = pytest.importorskip("gensim.models.keyedvectors")
    kv = keyedvectors.KeyedVectors(model.dim)
    kv.add_vectors(list(model.words), np.asarray(model.input_vectors))
    return kv


@pytest.fixture(scope="module")
def data() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"shared evaluation data not found: {DATA.resolve()} (the project expects it at ../shared/data)")
    return DATA


def _analogy_pairs(path: Path) -> dict[str, list[tuple[str, str]]]:
    """section -> the (a, b) and (c, d) word pairs of its questions, lower-cased."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for line in path.read_text().splitlines():
        if line.startswith(": "):
            name = line[2:]
            sections[name] = []
        else:
            a, b, c, d = line.lower().split()
            sections[name] += [(a, b), (c, d)]
    return sections


def _scored_pairs(path: Path) -> list[tuple[str, str, float]]:
    rows = [line.split("\t") for line in path.read_text().splitlines() if not line.startswith("#")]
    return [(a.lower(), b.lower(), float(score)) for a, b, score in rows]


@pytest.fixture(scope="module")
def planted(data, tmp_path_factory):
    """A model over the evaluation files' words (4% left out) and 600 fillers, in random frequency order.

    Random vectors, then planted structure: for 70% of the pairs of seven analogy sections, b = a + the
    section's offset + noise; for word pairs, b leans towards a in proportion to the human score. Forty case
    variants (Capitalised or UPPER) sit at random rows, most of them close to their word, so that both the
    first-occurrence rule and gensim's exclusion of the question words' other forms come into play."""
    rng = np.random.default_rng(7)
    dim = 48
    analogies = _analogy_pairs(data / "questions-words.txt")
    scored = _scored_pairs(data / "wordsim353.tsv") + _scored_pairs(data / "simlex999.txt")
    vocabulary = sorted({w for pairs in analogies.values() for p in pairs for w in p}
                        | {w for a, b, _ in scored for w in (a, b)})
    words = [w for w in vocabulary if rng.random() > 0.04] + [f"filler{i}" for i in range(600)]
    rng.shuffle(words)
    vectors = {w: rng.normal(size=dim) for w in words}
    done: set[str] = set()
    for name in ("capital-common-countries", "family", "gram2-opposite", "gram3-comparative",
                 "gram7-past-tense", "gram8-plural", "currency"):
        offset = 1.5 * rng.normal(size=dim)
        for a, b in dict.fromkeys(analogies[name]):
            if a in vectors and b in vectors and b not in done and rng.random() < 0.7:
                vectors[b] = vectors[a] + offset + 0.6 * rng.normal(size=dim)
                done.add(b)
    for a, b, score in scored:
        if a in vectors and b in vectors and b not in done:
            vectors[b] = 0.25 * score * vectors[a] + rng.normal(size=dim)
            done.add(b)
    for word in rng.choice([w for w in vocabulary if w in vectors], 40, replace=False):
        variant = str(word).capitalize() if rng.random() < 0.5 else str(word).upper()
        vectors[variant] = vectors[word] + (0.3 if rng.random() < 0.7 else 3.0) * rng.normal(size=dim)
        words.insert(int(rng.integers(0, len(words))), variant)
    matrix = np.array([vectors[w] for w in words], dtype=np.float32)
    path = artifact.save(tmp_path_factory.mktemp("planted") / "model", words, np.arange(len(words))[::-1], matrix)
    model = artifact.load(path)
    return model, _gensim_vectors(model)


# ------------------------------------------------------------------------------------- agreement with gensim

@pytest.mark.parametrize("restrict_vocab, case_insensitive", [(30000, True), (1500, True), (1500, False)])
def test_analogies_agree_with_gensim(planted, data, restrict_vocab, case_insensitive):
    model, kv = planted
    path = data / "questions-words.txt"
    ours = evaluate_analogies(model, path, restrict_vocab=restrict_vocab, case_insensitive=case_insensitive)
    score, sections = kv.evaluate_word_analogies(str(path), restrict_vocab=restrict_vocab,
                                                 case_insensitive=case_insensitive)
    assert sections[-1]["section"] == "Total accuracy"
    assert [s["section"] for s in ours["sections"]] == [s["section"] for s in sections[:-1]]
    for mine, theirs in zip(ours["sections"], sections):
        total = len(theirs["correct"]) + len(theirs["incorrect"])
        assert mine["total"] == total
        assert 100 * abs(mine["accuracy"] - (len(theirs["correct"]) / total if total else 0.0)) <= 0.1
    assert 100 * abs(ours["accuracy"] - score) <= 0.1
    assert ours["questions"] == 19544
    assert ours["skipped"] == ours["questions"] - ours["total"] > 0
    assert 0.05 < ours["accuracy"] < 0.95  # the planted structure makes the comparison meaningful


@pytest.mark.parametrize("name", ["wordsim353.tsv", "simlex999.txt"])
def test_word_pairs_agree_with_gensim(planted, data, name):
    model, kv = planted
    ours = evaluate_word_pairs(model, data / name)
    (pearson, _), (rho, _), oov_ratio = kv.evaluate_word_pairs(str(data / name))
    assert 100 * abs(ours["spearman"] - rho) <= 0.1
    assert 100 * abs(ours["pearson"] - pearson) <= 0.1
    assert abs(ours["oov_ratio"] - oov_ratio) <= 0.1
    assert ours["skipped"] > 0 and ours["invalid_lines"] == 0
    assert ours["spearman"] > 0.2  # planted: cosine follows the human score


# ------------------------------------------------------------------------------------------- hand-made files

def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


E = np.eye(8)
QUERY = _unit(E[1] + E[2] - E[0])  # man -> woman as king -> ?: woman + king - man


def _save(tmp_path, rows: dict[str, np.ndarray], name="model"):
    words = list(rows)
    return artifact.load(artifact.save(tmp_path / name, words, np.arange(len(words))[::-1],
                                       np.array([rows[w] for w in words])))


def _write(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = {"man": E[0], "woman": E[1], "king": E[2], "queen": QUERY, "paris": E[3], "france": E[4], "rome": E[5],
        "italy": _unit(E[4] + E[5] - E[3]), "berlin": E[6], "germany": E[7]}
QUESTIONS = """: family
man woman king queen
man woman king berlin
man woman king unicorn
man woman king
: capitals
paris france rome italy
PARIS France Rome ITALY
paris france rome germany
: empty-section
"""


@pytest.mark.parametrize("case_insensitive, capitals", [(True, (2, 2, 1)), (False, (1, 1, 2))])
def test_sections_are_accounted_separately(tmp_path, case_insensitive, capitals):
    model = _save(tmp_path, BASE)  # 'germany' is row 9: outside restrict_vocab=9
    result = evaluate_analogies(model, _write(tmp_path, "q.txt", QUESTIONS), restrict_vocab=9,
                                case_insensitive=case_insensitive)
    table = {s["section"]: (s["correct"], s["total"], s["skipped"]) for s in result["sections"]}
    assert table == {"family": (1, 2, 1), "capitals": capitals, "empty-section": (0, 0, 0)}
    assert result["sections"][2]["accuracy"] == 0.0
    assert (result["correct"], result["total"], result["questions"], result["invalid_lines"]) == \
        (1 + capitals[0], 2 + capitals[1], 6, 1)
    assert result["skipped"] == 1 + capitals[2]
    assert result["accuracy"] == pytest.approx((1 + capitals[0]) / (2 + capitals[1]))


@pytest.mark.parametrize("first, expected", [("King", 1), ("king", 0)])
def test_case_insensitive_takes_the_first_form(tmp_path, first, expected):
    """'KING' in a question means whichever of King/king comes first: here only King has the right vector."""
    rows = dict(BASE, King=E[2], king=E[7], jester=_unit(E[1] + E[7] - E[0]))  # jester answers with king's vector
    order = ["man", "woman", first, "queen", "jester", "berlin", "King" if first == "king" else "king"]
    model = _save(tmp_path, {w: rows[w] for w in order})
    result = evaluate_analogies(model, _write(tmp_path, "q.txt", ": s\nMAN WOMAN KING QUEEN\n"))
    assert (result["correct"], result["total"]) == (expected, 1)


@pytest.mark.parametrize("forms, expected", [(4, 1), (5, 0)])
def test_other_forms_of_question_words_are_passed_over_within_the_top_five(tmp_path, forms, expected):
    """Forms like 'Woman' rank above 'queen' here; they are skipped, but only 5 candidates are looked at."""
    rows = dict(BASE, queen=_unit(QUERY + 0.3 * E[7]))
    for i, form in enumerate(["Woman", "WOMAN", "King", "KING", "Man"][:forms]):
        rows[form] = _unit(QUERY + 0.01 * (i + 1) * E[6])
    model = _save(tmp_path, rows)
    path = _write(tmp_path, "q.txt", ": s\nman woman king queen\n")
    result = evaluate_analogies(model, path)
    assert result["correct"] == expected
    score, _ = _gensim_vectors(model).evaluate_word_analogies(str(path), restrict_vocab=30000)
    assert result["accuracy"] == score
    assert evaluate_analogies(model, path, case_insensitive=False)["correct"] == 0  # 'Woman' is another word


def _angle(degrees: float) -> np.ndarray:
    """A unit vector in the plane of the first two of 8 dimensions."""
    return np.r_[np.cos(np.radians(degrees)), np.sin(np.radians(degrees)), np.zeros(6)]


# cosines with x: a 0.9, b and b2 0.5 (the same vector: a tie), c 0.1, d -0.3
PAIR_VECTORS = {"x": _angle(0), "a": _angle(np.degrees(np.arccos(0.9))), "b": _angle(60), "b2": _angle(60),
                "c": _angle(np.degrees(np.arccos(0.1))), "d": _angle(np.degrees(np.arccos(-0.3)))}
PAIRS = """# word1\tword2\tscore
X\tA\t4
x\tb\t4

x\tB2\t1
x\tc\t2
x\td\t0
x\tunicorn\t3
a malformed line
"""


def test_spearman_with_ties_matches_a_hand_computation(tmp_path):
    """Model ranks [5, 3.5, 3.5, 2, 1], human ranks [4.5, 4.5, 2, 3, 1]: both centred on 3, covariance 7.25,
    squared deviations 9.5 each, so rho = 7.25 / 9.5 = 29/38."""
    model = _save(tmp_path, PAIR_VECTORS)
    result = evaluate_word_pairs(model, _write(tmp_path, "pairs.tsv", PAIRS))
    assert result["spearman"] == pytest.approx(29 / 38)
    cosines, gold = [0.9, 0.5, 0.5, 0.1, -0.3], [4, 4, 1, 2, 0]
    assert result["pearson"] == pytest.approx(np.corrcoef(cosines, gold)[0, 1], abs=1e-6)
    assert (result["pairs"], result["skipped"], result["invalid_lines"]) == (5, 1, 1)
    assert result["oov_ratio"] == pytest.approx(100 / 6)


def test_word_pairs_case_sensitive_skips_other_cases(tmp_path):
    model = _save(tmp_path, PAIR_VECTORS)
    result = evaluate_word_pairs(model, _write(tmp_path, "pairs.tsv", PAIRS), case_insensitive=False)
    assert (result["pairs"], result["skipped"]) == (3, 3)


def test_correlations_undefined_are_none(tmp_path):
    model = _save(tmp_path, PAIR_VECTORS)
    result = evaluate_word_pairs(model, _write(tmp_path, "pairs.tsv", "x\ta\t1\nx\tunicorn\t2\n"))
    assert result["spearman"] is None and result["pearson"] is None and result["oov_ratio"] == 50.0


@FAST
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(-3, 3)), min_size=2, max_size=30))
def test_ranks_and_spearman_match_scipy(pairs):
    stats = pytest.importorskip("scipy.stats")
    x, y = (np.array(column, dtype=float) for column in zip(*pairs))
    np.testing.assert_allclose(average_ranks(x), stats.rankdata(x))
    assume(len(set(x)) > 1 and len(set(y)) > 1)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)


# ------------------------------------------------------------------------------------------------ command line

def test_cli_prints_a_table_and_writes_json(tmp_path, capsys):
    model = _save(tmp_path, dict(BASE, **PAIR_VECTORS))
    questions = _write(tmp_path, "q.txt", QUESTIONS)
    pairs = _write(tmp_path, "pairs.tsv", PAIRS)
    out = tmp_path / "results.json"
    code = cli.main(["evaluate", str(model.path), "--analogies", str(questions), "--similarity", str(pairs),
                     str(pairs), "--restrict-vocab", "9", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    for text in ("family", "capitals", "overall", "pairs.tsv", "Spearman", "50.0%", "0.7632", "16.7%"):
        assert text in printed
    results = json.loads(out.read_text())
    assert results["analogies"] == evaluate_analogies(model, questions, restrict_vocab=9)
    assert len(results["similarity"]) == 2
    assert results["similarity"][0]["spearman"] == pytest.approx(29 / 38)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind


@pytest.mark.parametrize("arguments, message", [
    (["MODEL"], "--analogies"),
    (["missing-model", "--analogies", "QUESTIONS"], "model folder not found"),
    (["MODEL", "--analogies", "missing.txt"], "missing.txt: cannot read"),
    (["MODEL", "--similarity", "QUESTIONS"], "no word pairs"),
    (["MODEL", "--analogies", "PAIRS"], "': section'"),
    (["MODEL", "--analogies", "QUESTIONS", "--restrict-vocab", "0"], "--restrict-vocab"),
])
def test_cli_errors_exit_1(tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    _save(tmp_path, BASE, name="MODEL")
    _write(tmp_path, "QUESTIONS", QUESTIONS)
    _write(tmp_path, "PAIRS", PAIRS)
    assert cli.main(["evaluate", *arguments]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error
