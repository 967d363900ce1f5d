"""Corpus reading and encoding in every form, the errors a user can meet, the Wikipedia cleaner and the CLI."""
from __future__ import annotations

import bz2
import errno
import functools
import gzip
import io
import os
from collections import Counter
from itertools import chain
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.reference import WordCounter, build_vocabulary, iter_sentences
from trainer import corpus, encoding, reader
from trainer.cli import main
from trainer.corpus import CorpusError, EncodedCorpus, clean_wiki_dump, encode_corpus
from trainer.wikitext import wikitext_to_text

WORDS = ["the", "of", "and", "cat", "sat", "on", "mat", "café", "naïve", "日本", "x"]


def write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path``, compressed when the name ends in .gz or .bz2."""
    data = data.encode() if isinstance(data, str) else data
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix, open)
    with opener(path, "wb") as file:
        file.write(data)
    return path


def random_text(seed: int, lines: int = 60) -> str:
    """Lines of Zipf-ish words (some multi-byte) with uneven spacing, empty lines and CRLF endings."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(lines):
        n = int(rng.integers(0, 40))
        words = [WORDS[min(int(rng.zipf(1.5)) - 1, len(WORDS) - 1)] for _ in range(n)]
        words += [f"rare{rng.integers(1000)}" for _ in range(int(rng.integers(0, 3)))]
        out.append(rng.choice([" ", "  ", "\t"]).join(words) + rng.choice(["\n", "\r\n", " \n"]))
    return "".join(out)


def reference(data: bytes, min_count: int, limit: int) -> tuple[tuple[str, ...], list[int], list[int]]:
    """The slow, obvious twin: whole text in memory, lines split and cut, OOV dropped, empties dropped."""
    sentences = []
    for line in data.decode("utf-8", errors="replace").split("\n"):
        tokens = line.split()
        sentences += [tokens[i:i + limit] for i in range(0, len(tokens), limit)]
    vocab = build_vocabulary(Counter(chain.from_iterable(sentences)), min_count)
    ids, starts = [], [0]
    for sentence in sentences:
        kept = [vocab.index[word] for word in sentence if word in vocab.index]
        if kept:
            ids += kept
            starts.append(len(ids))
    return vocab.words, ids, starts


def assert_same(a: EncodedCorpus, b: EncodedCorpus) -> None:
    assert a.vocab == b.vocab and a.raw_tokens == b.raw_tokens
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.sentence_starts, b.sentence_starts)
    assert {k: v for k, v in a.stats.items() if k != "input_bytes"} == \
           {k: v for k, v in b.stats.items() if k != "input_bytes"}


@pytest.fixture
def text_file(tmp_path) -> Path:
    return write(tmp_path / "corpus.txt", random_text(0))


# ---------------------------------------------------------------------------------------------- encoding

@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("chunk_bytes", [1, 7, 64, corpus.CHUNK_BYTES])
@pytest.mark.parametrize("limit", [3, 10_000])
@pytest.mark.parametrize("workers", [1, 2, 5])
def test_encoding_matches_the_reference(tmp_path, seed, chunk_bytes, limit, workers):
    data = random_text(seed).encode()
    path = write(tmp_path / "c.txt", data)
    encoded = encode_corpus(path, min_count=2, max_sentence_length=limit, chunk_bytes=chunk_bytes,
                            workers=workers)
    words, ids, starts = reference(data, 2, limit)
    assert encoded.vocab.words == words
    assert encoded.tokens.dtype == np.int32 and encoded.tokens.tolist() == ids
    assert encoded.sentence_starts.dtype == np.int64 and encoded.sentence_starts.tolist() == starts
    assert encoded.raw_tokens == len(data.split())
    sentences = list(iter_sentences(path, max_sentence_length=limit, chunk_bytes=chunk_bytes))
    assert sum(map(len, sentences)) == encoded.raw_tokens and all(0 < len(s) <= limit for s in sentences)


def test_compressed_forms_give_identical_encodings(tmp_path):
    data = random_text(4, lines=300)
    encodings = [encode_corpus(write(tmp_path / name, data), min_count=3)
                 for name in ("c.txt", "c.txt.gz", "c.txt.bz2")]
    for other in encodings[1:]:
        assert_same(encodings[0], other)
    assert encodings[0].stats["input_bytes"] > encodings[1].stats["input_bytes"]


def test_oov_tokens_are_dropped_and_offsets_follow(tmp_path):
    path = write(tmp_path / "c.txt", "a a b c\nx y\n\n   \nb a q\n")
    encoded = encode_corpus(path, min_count=2)
    assert encoded.vocab.words == ("a", "b") and encoded.vocab.counts.tolist() == [3, 2]
    assert encoded.tokens.tolist() == [0, 0, 1, 1, 0]
    assert encoded.sentence_starts.tolist() == [0, 3, 5]
    assert encoded.stats == {"raw_tokens": 9, "kept_tokens": 5, "sentences": 2, "types_seen": 6,
                             "pruned_types": 0, "prunings": 0, "vocab_size": 2,
                             "input_bytes": path.stat().st_size}


def test_lines_are_cut_on_raw_tokens_before_oov_dropping(tmp_path):
    path = write(tmp_path / "c.txt", "a b a b a b a\n")
    encoded = encode_corpus(path, min_count=1, max_vocab=1, max_sentence_length=3)
    assert encoded.vocab.words == ("a",)
    assert encoded.sentence_starts.tolist() == [0, 2, 3, 4]  # [a b a] [b a b] [a]


@pytest.mark.parametrize("setting", [{"max_vocab": 0}, {"max_sentence_length": 0}])
def test_settings_that_keep_nothing_are_refused(tmp_path, setting):
    path = write(tmp_path / "c.txt", "a b a b\n")
    with pytest.raises(ValueError, match=f"{next(iter(setting))} must be at least 1"):
        encode_corpus(path, min_count=1, **setting)


def test_text8_style_single_line(tmp_path):
    words = np.array(["anarchy", "the", "of", "originated", "as", "term", "abuse"], dtype=object)
    block = np.random.default_rng(0).integers(0, len(words), 100_000)
    text = " ".join(words[block]) + " "
    path = tmp_path / "text8"
    with open(path, "w") as file:
        for _ in range(100):  # 10M tokens, ~60 MB, not one newline
            file.write(text)
    encoded = encode_corpus(path, min_count=1)
    expected = dict(zip(words, np.bincount(block, minlength=len(words)) * 100))
    assert encoded.raw_tokens == 10_000_000 == len(encoded.tokens)
    assert dict(zip(encoded.vocab.words, encoded.vocab.counts.tolist())) == expected
    np.testing.assert_array_equal(encoded.sentence_starts, np.arange(0, 10_000_001, 10_000))
    first = [encoded.vocab.index[w] for w in words[block[:10]]]
    assert encoded.tokens[:10].tolist() == first


def test_text8_style_sentences_come_in_pieces(tmp_path):
    path = write(tmp_path / "t8", " ".join(["w"] * 25_000))
    assert [len(s) for s in iter_sentences(path, chunk_bytes=4096)] == [10_000, 10_000, 5_000]


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 8])
def test_chunk_boundaries_inside_words_do_not_split_them(tmp_path, chunk_bytes):
    text = "supercalifragilistic naïveté 日本語のテキスト a\nbb   ccc\tdddd\n"
    path = write(tmp_path / "c.txt", text)
    expected = [line.split() for line in text.splitlines()]
    assert list(iter_sentences(path, chunk_bytes=chunk_bytes)) == expected
    encoded = encode_corpus(path, min_count=1, chunk_bytes=chunk_bytes)
    assert sorted(encoded.vocab.words) == sorted(text.split())


def test_non_utf8_bytes_are_replaced(tmp_path):
    path = write(tmp_path / "c.txt", b"caf\xe9 caf\xe9 ok \xff\xfe ok\nok\n")
    encoded = encode_corpus(path, min_count=1)
    assert encoded.vocab.words == ("ok", "caf\ufffd", "\ufffd\ufffd")
    assert next(iter_sentences(path)) == ["caf\ufffd", "caf\ufffd", "ok", "\ufffd\ufffd", "ok"]


@pytest.mark.parametrize("workers", [1, 2])
def test_words_of_equal_count_are_ordered_as_str_orders_them(tmp_path, workers):
    """The vocabulary compares words' bytes 16 at a time: words that share those 16 bytes, differ only by
    NULs, or hold invalid bytes (ordered by their decoded text, not their bytes) must still come in the
    order of Python's str, and a max_vocab cut must keep the first of that order."""
    words = [b"a" * 16 + b"z", b"a" * 16 + b"b", b"a" * 16, b"a" * 17, b"ab", b"ab\x00", b"ab\x00\x00",
             b"\xc0a", "\uffee".encode(), "\U0010ffff".encode(), b"\xff", "\u00e9t\u00e9".encode(),
             b"zz", b"z", "caf\u00e9".encode(), b"caf\xe9x", b"b" * 40 + b"1", b"b" * 40 + b"0", b"b"]
    head = b"q " * 40_000 + b"x " * 9 + b"\n"  # (NUL bytes in the first 64 KiB would mean binary)
    data = head + b"".join(b" ".join(words) + b"\n" for _ in range(3))
    path = write(tmp_path / "c.txt", data)
    expected, _, _ = reference(data, 3, 10_000)
    assert encode_corpus(path, min_count=3, workers=workers).vocab.words == expected
    assert expected[:2] == ("q", "x") and list(expected[2:]) == sorted(w.decode("utf-8", "replace") for w in words)
    assert encode_corpus(path, min_count=3, max_vocab=6, workers=workers).vocab.words == expected[:6]


def many_types_text(seed: int, lines: int, words_per_line: int, types: int) -> str:
    """Lines of words drawn from a Zipf law over ``types`` words of 1 to 20 letters (some longer than the
    8 bytes a table row holds inline, some sharing their first 8), and a few multi-byte ones."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghij"))
    vocabulary = ["".join(rng.choice(letters, int(n))) for n in rng.integers(1, 21, types)]
    vocabulary += ["abcdefgh", "abcdefghi", "abcdefghij" * 3, "日本語", "naïveté"]
    ranks = np.minimum(rng.zipf(1.2, size=(lines, words_per_line)) - 1, len(vocabulary) - 1)
    cut = rng.integers(0, words_per_line + 1, lines)  # uneven lines, some empty
    return "".join(" ".join(vocabulary[r] for r in row[:n]) + "\n" for row, n in zip(ranks, cut))


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("limit", [7, 10_000])
def test_many_types_grow_the_word_table_and_match_the_reference(monkeypatch, tmp_path, workers, limit):
    monkeypatch.setattr(encoding.WordTable, "INITIAL_WORDS", 16)  # grown many times
    data = many_types_text(5, lines=3000, words_per_line=40, types=30_000).encode()
    path = write(tmp_path / "c.txt", data)
    encoded = encode_corpus(path, min_count=2, max_sentence_length=limit, chunk_bytes=1 << 14, workers=workers)
    words, ids, starts = reference(data, 2, limit)
    assert encoded.vocab.words == words
    assert encoded.tokens.tolist() == ids and encoded.sentence_starts.tolist() == starts
    assert encoded.stats["types_seen"] == len(set(data.decode().split())) > 5_000


@pytest.mark.parametrize("workers", [1, 2])
def test_a_text8_style_line_split_between_threads_is_cut_as_one_line(tmp_path, workers):
    data = (" ".join(f"w{i % 13}" for i in range(10_007)) + " ").encode()  # one line, no newline
    path = write(tmp_path / "t8", data)
    encoded = encode_corpus(path, min_count=1, max_sentence_length=1000, chunk_bytes=997, workers=workers)
    assert encoded.sentence_starts.tolist() == [*range(0, 10_001, 1000), 10_007]
    assert encoded.tokens.tolist() == reference(data, 1, 1000)[1]


def test_invalid_utf8_spellings_that_decode_alike_are_one_word(tmp_path):
    data = b"caf\xe9 caf\xe8 caf\xef\xbf\xbd ok ok\ncaf\xe9 ok x\n"  # three spellings of "caf\ufffd"
    encoded = encode_corpus(write(tmp_path / "c.txt", data), min_count=2)
    words, ids, starts = reference(data, 2, 10_000)
    assert encoded.vocab.words == words == ("caf\ufffd", "ok") and encoded.vocab.counts.tolist() == [4, 3]
    assert encoded.tokens.tolist() == ids and encoded.stats["types_seen"] == 3


def test_bounded_types_prune_rare_words(tmp_path):
    lines = [f"the cat {' '.join(f'r{i}_{j}' for j in range(5))}" for i in range(100)]
    text = "again " + "\n".join(lines) + "\nagain again again the\n"
    path = write(tmp_path / "c.txt", text)
    encoded = encode_corpus(path, min_count=2, max_types=20, chunk_bytes=64, workers=1)
    assert encoded.vocab.words == ("the", "cat", "again")
    assert encoded.vocab.counts.tolist() == [101, 100, 3]  # the first "again" was pruned, then counted anew
    assert encoded.tokens.tolist() == [0, 1] * 100 + [2, 2, 2, 0]
    assert encoded.stats["pruned_types"] >= 400 and encoded.stats["prunings"] > 0
    assert encoded.stats["types_seen"] <= 20


@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("spill", [False, True])
def test_bounded_types_across_threads_keep_frequent_words_exact(monkeypatch, tmp_path, workers, spill):
    if spill:  # the ids already read are rewritten in their memory-mapped files too
        monkeypatch.setattr(corpus, "SPILL_TOKENS", 100)
    data = many_types_text(6, lines=2000, words_per_line=30, types=20_000).encode()
    path = write(tmp_path / "c.txt", data)
    encoded = encode_corpus(path, min_count=50, max_types=500, chunk_bytes=1 << 12, workers=workers)
    words, ids, starts = reference(data, 50, 10_000)
    assert encoded.stats["prunings"] > 0 and encoded.stats["types_seen"] <= 500
    exact = dict(zip(words, reference_counts(data, words)))
    frequent = [w for w in words if exact[w] >= 500]  # counted from their first occurrences on
    assert len(frequent) > 5
    got = dict(zip(encoded.vocab.words, encoded.vocab.counts.tolist()))
    assert all(got[w] == exact[w] for w in frequent)
    assert set(encoded.vocab.words) <= set(words)
    assert encoded.raw_tokens == len(data.split()) and encoded.stats["kept_tokens"] == len(encoded.tokens)


def reference_counts(data: bytes, words: tuple[str, ...]) -> list[int]:
    counts = Counter(data.decode().split())
    return [counts[w] for w in words]


@pytest.mark.parametrize("max_types", [5, 20, 100])
def test_bounded_types_count_as_the_reference_counter(tmp_path, max_types):
    path = write(tmp_path / "c.txt", random_text(5, lines=200))
    encoded = encode_corpus(path, min_count=2, max_types=max_types, chunk_bytes=64, workers=1)
    counter = WordCounter(max_types)
    counter.add(path.read_text().split())
    assert encoded.vocab == build_vocabulary(counter, min_count=2)
    assert (encoded.stats["pruned_types"], encoded.stats["prunings"]) == (counter.pruned_types, counter.prunings)


def test_workdir_memmaps_give_the_same_arrays(tmp_path, text_file):
    in_memory = encode_corpus(text_file, min_count=2)
    on_disk = encode_corpus(text_file, min_count=2, workdir=tmp_path / "work")
    assert_same(in_memory, on_disk)
    assert isinstance(on_disk.tokens, np.memmap) and not on_disk.tokens.flags.writeable
    assert [p.name for p in (tmp_path / "work").iterdir()] == [corpus.TOKENS_FILE]


def test_large_corpora_spill_to_disk_without_a_workdir(monkeypatch, text_file):
    in_memory = encode_corpus(text_file, min_count=2)
    monkeypatch.setattr(corpus, "SPILL_TOKENS", 10)
    spilled = encode_corpus(text_file, min_count=2, chunk_bytes=50, progress=True)
    assert_same(in_memory, spilled)
    assert isinstance(spilled.tokens, np.memmap)


# ------------------------------------------------------------------------------------------------ errors

def raw(path: Path, data: bytes) -> Path:
    """Write ``data`` as is, whatever the suffix says."""
    path.write_bytes(data)
    return path


@functools.cache
def poorly_compressible_gzip() -> bytes:
    """~4 MB of random words, gzipped (about 1.5 MB)."""
    rng = np.random.default_rng(0)
    text = "\n".join(" ".join(f"w{n}" for n in rng.integers(0, 10**6, 50)) for _ in range(8000))
    return gzip.compress(text.encode(), compresslevel=1)


def big_gzip(path: Path, keep: float) -> Path:
    """The big gzip, cut to the fraction ``keep`` of its bytes."""
    whole = poorly_compressible_gzip()
    return raw(path, whole[:int(len(whole) * keep)])


ERROR_CASES = {  # name: (make the file in a folder, what the message says)
    "missing": (lambda d: d / "nope.txt", "corpus not found: "),
    "directory": (lambda d: d, "is a directory"),
    "empty": (lambda d: write(d / "e.txt", ""), "empty"),
    "blank": (lambda d: write(d / "b.txt", " \n\t\r\n"), "empty"),
    "blank-beyond-the-head": (lambda d: write(d / "b.txt", " \n" * 100_000), "empty"),
    "empty-gzip": (lambda d: write(d / "e.txt.gz", ""), "empty"),
    "binary": (lambda d: write(d / "b.bin", b"\x7fELF\x02\x01\x00\x00 code"), "looks binary"),
    "binary-in-gzip": (lambda d: write(d / "b.gz", bytes(range(256)) * 10), "looks binary"),
    "not-gzip": (lambda d: raw(d / "c.txt.gz", b"plain text"), "corrupt or truncated gzip"),
    "truncated-gzip": (lambda d: raw(d / "t.gz", gzip.compress(b"a b c" * 99)[:20]), "corrupt or truncated gzip"),
    "truncated-gzip-midway": (lambda d: big_gzip(d / "big.gz", 0.6), "corrupt or truncated gzip"),
    "not-bzip2": (lambda d: raw(d / "c.bz2", b"plain text"), "corrupt or truncated bzip2"),
    "all-too-rare": (lambda d: write(d / "r.txt", "one two three two"), "min_count=5"),
}


def make_case(tmp_path: Path, case: str) -> tuple[Path, str]:
    make, message = ERROR_CASES[case]
    data = tmp_path / "data"
    data.mkdir()
    return make(data), message


@pytest.mark.parametrize("case", ERROR_CASES)
def test_encoding_errors_are_corpus_errors_and_leave_nothing_behind(tmp_path, case):
    path, message = make_case(tmp_path, case)
    with pytest.raises(CorpusError, match=message):
        encode_corpus(path, workdir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("case", [case for case in ERROR_CASES if case != "all-too-rare"])
def test_reading_errors_are_corpus_errors(tmp_path, case):
    path, message = make_case(tmp_path, case)
    with pytest.raises(CorpusError, match=message):
        list(iter_sentences(path))


def test_the_rare_words_message_says_what_was_seen(tmp_path):
    path = write(tmp_path / "r.txt", "one two three two")
    with pytest.raises(CorpusError) as caught:
        encode_corpus(path, min_count=5)
    assert "min_count=5" in str(caught.value) and "3 types" in str(caught.value)
    assert "most frequent occurs 2 times" in str(caught.value) and str(path) in str(caught.value)


def test_validation_errors_come_when_iter_sentences_is_called(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        iter_sentences(tmp_path / "missing.txt")


def test_unreadable_file(monkeypatch, text_file):
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr(reader, "open", refuse, raising=False)
    with pytest.raises(CorpusError, match="permission denied"):
        encode_corpus(text_file)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_on_disk(text_file):
    text_file.chmod(0)
    with pytest.raises(CorpusError, match="permission denied"):
        encode_corpus(text_file)


def test_file_vanishing_while_read(monkeypatch, tmp_path):
    class Vanishing(io.BufferedReader):
        def read(self, size=-1):
            if self.tell() > 0:
                raise OSError(errno.ESTALE, "Stale file handle")
            return super().read(size)

    path = write(tmp_path / "c.txt", "the cat sat on the mat\n" * 1000)
    monkeypatch.setattr(reader, "open", lambda p, mode="r": Vanishing(io.FileIO(p, "rb")), raising=False)
    with pytest.raises(CorpusError, match="while being read"):
        encode_corpus(path, min_count=1, chunk_bytes=1024, workdir=tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_compressed_file_cut_short_while_read(tmp_path):
    path = big_gzip(tmp_path / "big.gz", 1.0)
    sentences = iter_sentences(path)
    assert next(sentences)
    os.truncate(path, 0)
    with pytest.raises(CorpusError, match="corrupt or truncated gzip"):
        list(sentences)


def test_workdir_keeps_earlier_contents_on_failure(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("mine")
    with pytest.raises(CorpusError):
        encode_corpus(big_gzip(tmp_path / "big.gz", 0.6), workdir=work)
    assert [p.name for p in work.iterdir()] == ["keep.txt"]


# ---------------------------------------------------------------------------------------- Wikipedia dumps

DUMP = """<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">
  <siteinfo><sitename>Wikipedia</sitename><namespaces><namespace key="0" /></namespaces></siteinfo>
  <page>
    <title>Anarchism</title>
    <ns>0</ns>
    <id>12</id>
    <revision><id>1</id><text xml:space="preserve">{{Infobox thing|name={{nested|{{deeper}}}}|x=1}}
'''Anarchism''' is a [[political philosophy]] that ''advocates'' [[Self-governance|self-governed]] societies.\
&lt;ref name="a"&gt;Hidden {{cite|x}} reference&lt;/ref&gt; Since 1840.&lt;ref name="b" /&gt;
&lt;!-- a hidden comment --&gt;
== History ==
[[File:Flag.svg|thumb|left|A [[flag]] caption]]
See [http://example.org the site] or http://example.com/x.
{| class="wikitable"
|-
| cell one || {{cell|two}}
|}
Tom &amp;amp; Jerry&amp;nbsp;again.
[[Category:Political ideologies]]
[[de:Anarchismus]]
</text></revision>
  </page>
  <page><title>AccessibleComputing</title><ns>0</ns><id>10</id><redirect title="Computer accessibility" />
    <revision><text>#REDIRECT [[Computer accessibility]]</text></revision></page>
  <page><title>Old redirect</title><ns>0</ns><revision><text>#redirect [[Somewhere]]</text></revision></page>
  <page><title>Talk:Anarchism</title><ns>1</ns><revision><text>Talk page words</text></revision></page>
  <page><title>Only markup</title><ns>0</ns><revision><text>{{stub}} [[Category:Empty]]</text></revision></page>
  <page><title>Route</title><ns>0</ns><revision><text>Route 66 &lt;b&gt;bold&lt;/b&gt; text</text></revision></page>
</mediawiki>
"""
ARTICLES = ["anarchism is a political philosophy that advocates self governed societies since one eight four zero "
            "history see the site or tom jerry again",
            "route six six bold text"]


@pytest.mark.parametrize("name", ["dump.xml.bz2", "dump.xml.gz", "dump.xml"])
def test_wiki_dump_cleaning(tmp_path, name):
    dump = write(tmp_path / name, DUMP)
    stats = clean_wiki_dump(dump, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text().splitlines() == ARTICLES
    assert stats == {"pages": 6, "articles": 2, "words": sum(len(a.split()) for a in ARTICLES)}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "out.txt"])


@pytest.mark.parametrize("markup, text", [
    ("{{a|{{b|{{c}}}}}} x {{d}}", "x"),
    ("[[a|b]] [[c]] [[d (e)|f g]]s", "b c f gs"),
    ("x<ref>y</ref> z<ref name=n/> w", "x z w"),
    ("<math>x^2</math> y <sup>2</sup>", "y two"),
    ("a <!-- b --> c <!-- unclosed", "a c"),
    ("''x'' '''y''' '''''z'''''", "x y z"),
    ("[[Image:a.png|thumb|cap [[x|y]] [[z]]]] w [[:Category:c]] v", "w v"),
    ("[https://a.b/c] d [//e.f g h]", "d g h"),
    ("{| x\n|-\n| {| nested |}\n|}\nw", "w"),
    ("__NOTOC__ A&amp;B &lt;i&gt;C&lt;/i&gt;", "a b c"),
    ("café 1st", "caf one st"),
    ("{{broken a", "broken a"),
])
def test_wikitext_constructs(markup, text):
    assert wikitext_to_text(markup) == text


def test_truncated_dump_is_an_error_and_writes_nothing(tmp_path):
    whole = bz2.compress(DUMP.encode() * 1)
    (tmp_path / "cut.xml.bz2").write_bytes(whole[:len(whole) // 2])
    write(tmp_path / "cut.xml", DUMP[:len(DUMP) // 2])
    (tmp_path / "out.txt").write_text("earlier output\n")
    for name, message in [("cut.xml.bz2", "cleaning .* failed"), ("cut.xml", "not well-formed")]:
        with pytest.raises(CorpusError, match=message):
            clean_wiki_dump(tmp_path / name, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == "earlier output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.xml", "cut.xml.bz2", "out.txt"]


@pytest.mark.parametrize("dump_text, message", [
    ("<mediawiki></mediawiki>", "no <page> elements"),
    ("plain text, not XML", "not well-formed"),
])
def test_dumps_that_are_not_exports(tmp_path, dump_text, message):
    with pytest.raises(CorpusError, match=message):
        clean_wiki_dump(write(tmp_path / "d.xml", dump_text), tmp_path / "out.txt")
    assert not (tmp_path / "out.txt").exists()


def test_dump_paths_are_checked(tmp_path):
    with pytest.raises(CorpusError, match="Wikipedia dump not found"):
        clean_wiki_dump(tmp_path / "missing.xml.bz2", tmp_path / "out.txt")
    with pytest.raises(CorpusError, match="output directory does not exist"):
        clean_wiki_dump(write(tmp_path / "d.xml", DUMP), tmp_path / "no" / "out.txt")


# --------------------------------------------------------------------------------------------------- CLI

def test_cli_wiki_then_stats(tmp_path, capsys):
    dump, out = write(tmp_path / "d.xml.bz2", DUMP), tmp_path / "out.txt"
    assert main(["corpus", "wiki", str(dump), str(out), "--quiet"]) == 0
    assert out.read_text().splitlines() == ARTICLES
    assert "articles written" in capsys.readouterr().out
    assert main(["corpus", "stats", str(out), "--min-count", "2"]) == 0
    printed = dict(line.rsplit(None, 1) for line in capsys.readouterr().out.splitlines())
    counts = Counter(" ".join(ARTICLES).split())
    assert printed["raw tokens"] == str(counts.total())
    assert printed["sentences"] == "1"  # only "six" is frequent enough, and only the second line has it
    assert printed["types"] == str(len(counts))
    assert printed["vocabulary (min-count 2)"] == str(sum(c >= 2 for c in counts.values()))


@pytest.mark.parametrize("argv", [["corpus", "stats", "{tmp}/missing.txt"],
                                  ["corpus", "wiki", "{tmp}/missing.xml.bz2", "{tmp}/out.txt"],
                                  ["corpus", "stats", "{tmp}/rare.txt", "--min-count", "9"]])
def test_cli_errors_exit_1(tmp_path, capsys, argv):
    write(tmp_path / "rare.txt", "a b c")
    assert main([arg.format(tmp=tmp_path) for arg in argv]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.out == ""
