"""Phrases (`corpus phrases`): planted collocations are joined and random pairs are not; the output equals
the original word2phrase's token for token on the enwiki sample (one and two passes); gensim's Phrases
with the same formula finds the same phrases; memory stays bounded when pairs explode; bad inputs fail.

word2phrase is built once from the `word2vec` sdist into .cache/bin, as test_word2vec_tool.py builds the
word2vec tool. Each of its runs allocates and clears a 2 GB hash table (about 3 s), so it runs three times."""
import bz2
import gzip
import json
import os
import subprocess
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.trainer.reference import join_phrases
from tests.trainer.test_word2vec_tool import _built
from trainer import artifact
from trainer.cli import main
from trainer.phrase_table import PhraseConfig, read_table, table_path
from trainer.phrases import EncodedText, PairCounter, capacity_for, learn_phrases

DATA = Path(__file__).parents[2] / ".." / "shared" / "data"
PLANTED = [("new", "york"), ("hong", "kong"), ("los", "angeles"), ("prime", "minister")]


@pytest.fixture(scope="module")
def enwiki() -> Path:
    path = DATA / "enwiki-sample.txt"
    if not path.is_file():
        pytest.skip(f"shared data not found: {path.resolve()} (the project expects it at ../shared/data)")
    return path


def planted_lines(seed=0, lines=400, length=25, vocab=300, pairs=PLANTED, trigrams=(), rate=0.02):
    """Random words w0..w{vocab-1} (uniform: any two meet by chance only) with planted pairs and
    trigrams in a fraction ``rate`` of the positions, and each planted word also alone now and then."""
    rng = np.random.default_rng(seed)
    units = [[f"w{i}"] for i in range(vocab)]
    planted = [list(p) for p in (*pairs, *trigrams)]
    out = []
    for _ in range(lines):
        words = []
        for _ in range(length):
            r = rng.random()
            pick = planted[rng.integers(len(planted))] if r < rate else units[rng.integers(vocab)]
            if r > 0.995:  # a planted word alone
                pick = [rng.choice(planted[rng.integers(len(planted))])]
            words += pick
        out.append(" ".join(words))
    return out


def write_lines(path: Path, lines: list[str], form: str = "plain") -> Path:
    text = ("\n".join(lines) + "\n") if form != "text8" else " ".join(lines)
    data = text.encode()
    if form == "gz":
        data = gzip.compress(data)
    elif form == "bz2":
        data = bz2.compress(data)
    path.write_bytes(data)
    return path


def phrase(corpus, out, *options):
    return main(["corpus", "phrases", str(corpus), str(out), "--quiet", *options])


@pytest.mark.parametrize("form, name", [("plain", "c.txt"), ("text8", "c8.txt"), ("gz", "c.txt.gz"),
                                        ("bz2", "c.txt.bz2")])
def test_planted_collocations_are_joined_and_random_pairs_are_not(tmp_path, form, name):
    lines = planted_lines()
    corpus = write_lines(tmp_path / name, lines, form)
    assert phrase(corpus, tmp_path / "out.txt") == 0
    table = read_table(table_path(tmp_path / "out.txt"))
    assert {(p.left, p.right) for p in table.phrases} == set(PLANTED)  # no pair of random words
    written = (tmp_path / "out.txt").read_text().split("\n")
    if form == "text8":
        assert written == [" ".join(join_phrases(table, " ".join(lines).split()))]  # no newline in, none out
    else:
        assert written == [" ".join(join_phrases(table, line.split())) for line in lines] + [""]
    joined = Counter(w for line in written for w in line.split())
    for a, b in PLANTED:  # every occurrence is joined (no planted pair follows another's right word)
        assert joined[f"{a}_{b}"] == sum(line.split().count(a) for line in lines) - joined[a] > 20


def test_the_table_file_and_apply_to_other_text(tmp_path):
    corpus = write_lines(tmp_path / "c.txt", planted_lines())
    assert phrase(corpus, tmp_path / "out.txt") == 0
    rows = [line.split("\t") for line in table_path(tmp_path / "out.txt").read_text().splitlines()]
    assert len(rows) == len(PLANTED) and all(len(row) == 6 for row in rows)
    for token, score, count, pass_number, left, right in rows:  # a_b, score, count, then pass, a, b
        assert token == f"{left}_{right}" and float(score) > 100 and int(count) > 20 and pass_number == "1"
    other = write_lines(tmp_path / "other.txt", ["the new york times", "new new york  york", "hong\tkong"])
    assert phrase(other, tmp_path / "other-out.txt", "--apply", str(table_path(tmp_path / "out.txt"))) == 0
    assert (tmp_path / "other-out.txt").read_text() == "the new_york times\nnew new_york york\nhong_kong\n"
    assert table_path(tmp_path / "other-out.txt").read_text() == table_path(tmp_path / "out.txt").read_text()
    three_columns = tmp_path / "three.tsv"  # a_b<TAB>score<TAB>count is read as a pass-1 phrase
    three_columns.write_text("new_york\t300\t40\n")
    assert join_phrases(read_table(three_columns), "the new york times".split()) == ["the", "new_york", "times"]


def test_a_token_that_ended_a_phrase_does_not_begin_another(tmp_path):
    """word2phrase sets the count of a just-joined word to 0, so the next pair of the same pass is not
    joined even when the new token forms one: a text that already holds new_york."""
    table = tmp_path / "t.tsv"
    table.write_text("new_york\t900\t9\t1\tnew\tyork\nnew_york_city\t900\t9\t1\tnew_york\tcity\n"
                     "a_b\t900\t9\t1\ta\tb\nb_c\t900\t9\t1\tb\tc\n")
    text = write_lines(tmp_path / "in.txt", ["new york city", "new_york city", "a b c", "a b b c", "b c a b"])
    assert phrase(text, tmp_path / "out.txt", "--apply", str(table)) == 0
    expected = ["new_york city", "new_york_city", "a_b c", "a_b b_c", "b_c a_b"]
    assert (tmp_path / "out.txt").read_text().split("\n")[:-1] == expected
    twin = read_table(table)
    lines = (tmp_path / "in.txt").read_text().splitlines()
    assert [" ".join(join_phrases(twin, line.split())) for line in lines] == expected


def test_two_passes_build_planted_trigrams_and_fourgrams(tmp_path):
    lines = planted_lines(trigrams=[("new", "york", "city"), ("hong", "kong", "stock", "exchange")],
                          pairs=[("new", "york"), ("hong", "kong"), ("stock", "exchange")])
    corpus = write_lines(tmp_path / "c.txt", lines)
    assert phrase(corpus, tmp_path / "one.txt", "--threshold", "30") == 0
    one = Counter((tmp_path / "one.txt").read_text().split())
    assert one["new_york"] > 0 and one["new_york_city"] == one["hong_kong_stock_exchange"] == 0
    assert phrase(corpus, tmp_path / "two.txt", "--threshold", "30", "--passes", "2") == 0
    table = read_table(table_path(tmp_path / "two.txt"))
    later = {(p.left, p.right) for p in table.phrases if p.pass_number == 2}
    assert {("new_york", "city"), ("hong_kong", "stock_exchange")} <= later
    two = (tmp_path / "two.txt").read_text()
    assert two.split("\n")[:-1] == [" ".join(join_phrases(table, line.split())) for line in lines]
    counts = Counter(two.split())
    assert counts["new_york_city"] >= 20 and counts["hong_kong_stock_exchange"] >= 20
    assert counts["city"] < one["city"] / 2  # most cities followed new york
    assert phrase(corpus, tmp_path / "applied.txt", "--apply", str(table_path(tmp_path / "two.txt"))) == 0
    assert (tmp_path / "applied.txt").read_text() == two


# ------------------------------------------------------------------------------- the original tool

def _word2phrase(binary: Path, corpus: Path, out: Path, min_count: int, threshold: float) -> list[list[str]]:
    """Run word2phrase in OUT's folder: it copies file names into 60-byte buffers."""
    names = [min((str(corpus), os.path.relpath(corpus, out.parent)), key=len), out.name]
    assert max(map(len, names)) < 60, names
    subprocess.run([str(binary), "-train", names[0], "-output", names[1], "-min-count", str(min_count),
                    "-threshold", str(threshold), "-debug", "0"], check=True, stdout=subprocess.DEVNULL,
                   cwd=out.parent)
    return [line.split() for line in out.read_text().split("\n")]


@pytest.fixture(scope="module")
def word2phrase_runs(enwiki, tmp_path_factory):
    """word2phrase on the enwiki sample (min count 5, threshold 100), then on its own output (50)."""
    binary, folder = _built("word2phrase"), tmp_path_factory.mktemp("word2phrase")
    first = _word2phrase(binary, enwiki, folder / "one.txt", 5, 100)
    second = _word2phrase(binary, folder / "one.txt", folder / "two.txt", 5, 50)
    return first, second


@pytest.mark.parametrize("passes", [1, 2])
def test_output_equals_word2phrase_on_the_enwiki_sample(enwiki, word2phrase_runs, tmp_path, passes):
    assert phrase(enwiki, tmp_path / "out.txt", "--passes", str(passes)) == 0  # threshold 100, then 50
    ours = [line.split() for line in (tmp_path / "out.txt").read_text().split("\n")]
    theirs = word2phrase_runs[passes - 1]
    assert sum(w.count("_") for line in ours for w in line) > 10_000  # phrases were made
    assert ours == theirs  # line for line, token for token


def test_whitespace_and_blank_lines_as_word2phrase(tmp_path):
    """Tabs, runs of spaces, CRLF line ends, blank lines: the same tokens and lines as word2phrase (which
    starts each line with a space and drops the last word of a file that does not end in a newline)."""
    lines = planted_lines(lines=120, vocab=100)
    messy = [("\t" if i % 3 else "   ").join(line.split()) + ("\r" if i % 2 else "") for i, line in enumerate(lines)]
    for i in range(0, len(messy), 10):
        messy[i] = ""
    corpus = tmp_path / "messy.txt"
    corpus.write_text("\n".join(messy) + "\n")
    assert phrase(corpus, tmp_path / "out.txt", "--min-count", "3", "--threshold", "40") == 0
    ours = [line.split() for line in (tmp_path / "out.txt").read_text().split("\n")]
    assert ours == _word2phrase(_built("word2phrase"), corpus, tmp_path / "w2p.txt", 3, 40)
    assert len(ours) == len(messy) + 1 and any("_" in w for line in ours for w in line)


# ------------------------------------------------------------------------------------------- gensim

def word2phrase_scorer(worda_count, wordb_count, bigram_count, len_vocab, min_count, corpus_word_count):
    """word2phrase's formula for gensim (whose own original_scorer multiplies by len(vocab) instead)."""
    return (bigram_count - min_count) / worda_count / wordb_count * corpus_word_count


def test_gensim_with_the_same_formula_finds_the_same_phrases(enwiki):
    from gensim.models.phrases import FrozenPhrases, Phrases

    sentences = [line.split() for line in enwiki.read_text().splitlines()]
    gensim = FrozenPhrases(Phrases(sentences, min_count=5, threshold=100, scoring=word2phrase_scorer))
    table, _ = learn_phrases(enwiki, PhraseConfig(min_count=5, threshold=100))
    assert len(table.phrases) > 500 and {table.token(p) for p in table.phrases} == set(gensim.phrasegrams)
    within = Counter(pair for sentence in sentences for pair in zip(sentence, sentence[1:]))
    spanning = 0  # phrases also counted where they span a line end (below): their scores differ
    for p in table.phrases:
        if within[p.left, p.right] == p.count:  # ours in float32, as word2phrase computes
            assert p.score == pytest.approx(gensim.phrasegrams[table.token(p)], rel=1e-6)
        else:
            spanning += 1
            assert p.count > within[p.left, p.right]
    assert spanning < 5
    for sentence in sentences[:50]:
        assert join_phrases(table, sentence) == gensim[sentence]


def test_npmi_as_gensim_on_one_line(tmp_path):
    """On a text8-style corpus (one line, so gensim's one sentence sees every pair too) both tools score
    normalised PMI alike."""
    from gensim.models.phrases import Phrases

    tokens = " ".join(planted_lines(lines=200)).split()
    corpus = tmp_path / "one-line.txt"
    corpus.write_text(" ".join(tokens))
    table, _ = learn_phrases(corpus, PhraseConfig(scoring="npmi", threshold=0.5))
    gensim = Phrases([tokens], min_count=5, threshold=0.5, scoring="npmi").export_phrases()
    assert {table.token(p) for p in table.phrases} == set(gensim) == {f"{a}_{b}" for a, b in PLANTED}
    for p in table.phrases:
        assert p.score == pytest.approx(gensim[table.token(p)], rel=1e-12)


def test_where_gensim_differs_pairs_across_line_ends_count_as_in_word2phrase(tmp_path):
    """word2phrase (and this project) count pairs over the whole text, across line ends; gensim only
    within a sentence. A pair that only ever spans a line end is a phrase here, never joined in a line."""
    from gensim.models.phrases import Phrases

    rng = np.random.default_rng(0)
    lines = [" ".join(f"w{i}" for i in rng.integers(40, size=10)) + " endword" for _ in range(200)]
    lines = [line for pair in zip(lines, (f"startword w{i}" for i in rng.integers(40, size=200))) for line in pair]
    corpus = write_lines(tmp_path / "c.txt", lines)
    table, _ = learn_phrases(corpus, PhraseConfig(min_count=5, threshold=5))
    assert {(p.left, p.right) for p in table.phrases} == {("endword", "startword")}
    gensim = Phrases([line.split() for line in lines], min_count=5, threshold=5, scoring=word2phrase_scorer)
    assert gensim.export_phrases() == {}
    assert phrase(corpus, tmp_path / "out.txt", "--min-count", "5", "--threshold", "5") == 0
    assert "endword_startword" not in (tmp_path / "out.txt").read_text()


# -------------------------------------------------------------------------------------- memory

def naive_pair_counts(stream: list[int], max_pairs: int) -> dict[int, int]:
    """The slow twin of PairCounter: a dict, pruned as word2phrase's ReduceVocab prunes."""
    counts: dict[int, int] = {}
    min_reduce, previous = 1, -1
    for word in stream:
        if word < 0:
            continue
        if previous >= 0:
            key = previous << 32 | word
            counts[key] = counts.get(key, 0) + 1
            if len(counts) > max_pairs:
                counts = {k: c for k, c in counts.items() if c > min_reduce}
                min_reduce += 1
        previous = word
    return counts


@settings(deadline=None, max_examples=30, database=None)
@given(st.lists(st.integers(-1, 30), max_size=600), st.integers(1, 60))
def test_pair_counts_and_pruning_match_the_slow_twin(stream, max_pairs):
    counter = PairCounter(31, max_pairs, initial_capacity=16)
    counter.count(np.array(stream, dtype=np.int32))
    held = counter.keys != -1
    assert dict(zip(counter.keys[held].tolist(), counter.counts[held].tolist())) == naive_pair_counts(stream, max_pairs)
    assert counter.unigrams.tolist() == np.bincount([w for w in stream if w >= 0], minlength=31).tolist()


def test_memory_stays_bounded_when_distinct_pairs_explode(tmp_path, capsys):
    """300,000 tokens of 3,000 random words: about 290,000 distinct pairs. With --max-pairs 5,000 the
    table stays at its bound (pruned again and again, and reported), and the planted pairs survive."""
    corpus = write_lines(tmp_path / "c.txt", planted_lines(seed=1, lines=6000, length=50, vocab=3000))
    tracemalloc.start()
    EncodedText(corpus)
    reading = tracemalloc.get_traced_memory()[1]  # what does not depend on the pairs
    tracemalloc.stop()
    peaks = {}
    for max_pairs in (5_000, 10_000_000):
        tracemalloc.start()
        table, report = learn_phrases(corpus, PhraseConfig(max_pairs=max_pairs, threshold=50))
        peaks[max_pairs] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert {(p.left, p.right) for p in table.phrases} == set(PLANTED)
        if max_pairs == 5_000:
            assert report[0]["prunings"] > 10 and report[0]["pairs"] <= 5_000
            assert report[0]["table_bytes"] == 16 * capacity_for(5_001) <= 128 * 1024
        else:
            assert report[0]["prunings"] == 0 and report[0]["pairs"] > 250_000
    assert peaks[5_000] < reading + 2 * 1024 * 1024
    assert peaks[10_000_000] > reading + 8 * 1024 * 1024  # the unbounded table: 2**20 slots of 16 bytes
    assert phrase(corpus, tmp_path / "out.txt", "--max-pairs", "5000") == 0
    printed = capsys.readouterr().out
    assert " 0 prunings" not in printed and "prunings" in printed


# ---------------------------------------------------------------------------------- tokens and text

@settings(deadline=None, max_examples=40, database=None)
@given(st.lists(st.sampled_from(["a", "b", "é", "日本", " ", "  ", "\t", "\n", "\r", "\x0b", "\x1c", "\x85",
                                 "\xa0", "\u1680", "\u2003", "\u2028", "\u202f", "\u205f", "\u3000", "\u2020",
                                 "ñ\u200b"]), max_size=40))
def test_tokens_are_those_of_str_split_and_lines_stay_lines(tmp_path_factory, pieces):
    text = "plain words " * 12 + "".join(pieces)  # (mostly control characters would look binary)
    path = tmp_path_factory.mktemp("t") / "t.txt"
    path.write_bytes(text.encode())
    encoded = EncodedText(path, chunk_bytes=7)  # tiny pieces: tokens and characters across piece ends
    out = path.with_name("out.txt")
    with open(out, "wb") as f:
        encoded.write(f)
    assert out.read_text() == "\n".join(" ".join(line.split()) for line in text.split("\n"))


def test_a_corpus_of_many_ids_is_phrased_in_a_memory_mapped_file_alike(tmp_path):
    corpus = write_lines(tmp_path / "c.txt", planted_lines())
    outputs = []
    for spill_at in (10**9, 1000):  # in RAM; in a temporary file beyond 1,000 ids
        text = EncodedText(corpus, spill_at=spill_at)
        assert isinstance(text.ids, np.memmap) == (spill_at == 1000)
        table, _ = text.learn(PhraseConfig(passes=2))
        with open(tmp_path / f"out-{spill_at}.txt", "wb") as f:
            text.write(f)
        outputs.append(((tmp_path / f"out-{spill_at}.txt").read_bytes(), table.to_text()))
    assert outputs[0] == outputs[1] and b"new_york" in outputs[0][0]


def test_train_records_the_table_of_a_phrased_corpus(tmp_path):
    corpus = write_lines(tmp_path / "c.txt", planted_lines())
    assert phrase(corpus, tmp_path / "phrased.txt") == 0
    small = ["--dim", "8", "--epochs", "1", "--min-count", "1", "--quiet"]
    assert main(["train", str(tmp_path / "phrased.txt"), "--out", str(tmp_path / "m"), *small]) == 0
    record = artifact.load(tmp_path / "m").meta["corpus"]["phrases"]
    table = table_path(tmp_path / "phrased.txt")
    assert record["table"] == str(table) and record["phrases"] == len(PLANTED) == sum(record["phrases_per_pass"])
    assert len(record["sha256"]) == 64 and record["delimiter"] == "_"
    assert "new_york" in artifact.load(tmp_path / "m").index
    from service import create_app  # the service serves phrase tokens like any other word
    client = create_app({"MODEL_DIR": str(tmp_path / "m"), "CACHE_DIR": str(tmp_path / "cache"),
                         "TESTING": True}).test_client()
    assert client.get("/words?prefix=new_").get_json()["words"] == ["new_york"]
    similar = client.get("/similar?word=hong_kong&k=3")
    assert similar.status_code == 200 and len(similar.get_json()["neighbors"]) == 3
    assert main(["train", str(corpus), "--out", str(tmp_path / "plain"), *small]) == 0
    assert json.loads((tmp_path / "plain" / "meta.json").read_text())["corpus"]["phrases"] is None


# -------------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("corpus_text, options, out_name, message", [
    ("", [], "out.txt", "corpus is empty"),
    (" \n\t\n" * 30_000, [], "out.txt", "corpus is empty"),
    ("a b c\n", ["--threshold", "lots"], "out.txt", "--threshold must be a number, got 'lots'"),
    ("a b c\n", ["--threshold", "nan"], "out.txt", "--threshold must be a finite number"),
    ("a b c\n", ["--min-count", "2.5"], "out.txt", "--min-count must be an integer"),
    ("a b c\n", ["--scoring", "npmi", "--threshold", "5"], "out.txt", "between -1 and 1 for npmi"),
    ("a b c\n", ["--scoring", "pmi"], "out.txt", "--scoring must be one of word2phrase, npmi"),
    ("a b c\n", ["--delimiter", " "], "out.txt", "--delimiter must be non-empty"),
    ("a b c\n", [], "missing/out.txt", "output directory does not exist"),
    ("a b c\n", [], "taken", "is a directory"),
    ("a b c\n", ["--apply", "{tmp}/bad.tsv"], "out.txt", "bad.tsv: line 2: expected phrase, score, count"),
    ("a b c\n", ["--apply", "{tmp}/bad.tsv", "--threshold", "3"], "out.txt", "--threshold cannot be used with --apply"),
])
def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path, capsys, corpus_text, options, out_name, message):
    (tmp_path / "corpus.txt").write_text(corpus_text)
    (tmp_path / "taken").mkdir()
    (tmp_path / "bad.tsv").write_text("a_b\t1.5\t7\t1\ta\tb\nc_d\t2\n")
    before = sorted(tmp_path.rglob("*"))
    options = [option.format(tmp=tmp_path) for option in options]
    assert main(["corpus", "phrases", str(tmp_path / "corpus.txt"), str(tmp_path / out_name), *options]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and message in captured.err, captured.err
    assert captured.out == "" and sorted(tmp_path.rglob("*")) == before
