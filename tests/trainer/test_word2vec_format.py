"""Vectors files of other tools: each layout as the tool writes it imports with the documented result,
imperfect files import with the documented repair or fail with the documented message, exports load back."""
import numpy as np
import pytest
from gensim.models import KeyedVectors

from trainer import artifact, word2vec_read, word2vec_rows
from trainer.cli import main
from trainer.word2vec_format import export_word2vec, import_word2vec

from .conftest import WORDS
from .vector_files import LAYOUTS, c_binary, c_text, crlf, glove, stands_for, write

RAW_WORDS = [b"</s>", b"the", "ünïcode".encode(), b"of", b"x" * 40]
RNG_VECTORS = np.random.default_rng(1).normal(size=(len(RAW_WORDS), 4)).astype(np.float32)


def _import(tmp_path, name: str, data: bytes, *options: str, capsys=None):
    """Run `python -m trainer import` on data written as `name`; returns (exit code, stderr)."""
    source = write(tmp_path / name, data)
    code = main(["import", str(source), str(tmp_path / "m"), *options])
    return code, capsys.readouterr().err if capsys else ""


FORMS = [(layout, suffix, ends) for layout, suffix in [("c-text", ".txt"), ("c-binary", ".bin"),
                                                       ("fasttext-vec", ".vec"), ("glove", ".txt"),
                                                       ("c-text", ".w2v"), ("c-binary", ".w2v")]  # by content
         for ends in (["\n"] if layout == "c-binary" else ["\n", "\r\n"])]


@pytest.mark.parametrize("compressed", ["", ".gz", ".bz2"])
@pytest.mark.parametrize("layout, suffix, line_ends", FORMS)
@pytest.mark.parametrize("tiny_blocks", [False, True])
def test_each_layout_imports_as_the_tool_wrote_it(tmp_path, monkeypatch, layout, suffix, line_ends, compressed,
                                                 tiny_blocks):
    writer, decimals, _ = LAYOUTS[layout]
    if tiny_blocks:  # rows straddle the blocks the file is read in, and the head the layout is told from
        monkeypatch.setattr(word2vec_rows, "BLOCK_BYTES", 37)
        monkeypatch.setattr(word2vec_read, "BLOCK_BYTES", 37)
        monkeypatch.setattr(word2vec_read, "HEAD_BYTES", 90)
    data = writer(RAW_WORDS, RNG_VECTORS)
    source = write(tmp_path / f"vectors{suffix}{compressed}", crlf(data) if line_ends == "\r\n" else data)
    model = artifact.verify(import_word2vec(source, tmp_path / "m"))
    assert model.words == tuple(w.decode() for w in RAW_WORDS)
    np.testing.assert_array_equal(model.input_vectors, stands_for(RNG_VECTORS, decimals))
    assert model.output_vectors is None and model.objective is None and not model.counts.any()
    assert model.meta["source"]["format"] == ("word2vec-binary" if layout == "c-binary" else
                                              "glove-text" if layout == "glove" else "word2vec-text")


def test_gensim_binary_without_newlines_imports(tmp_path):
    kv = KeyedVectors(3)
    kv.add_vectors(["alpha", "beta"], np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))
    kv.save_word2vec_format(tmp_path / "g.bin.gz", binary=True)
    model = artifact.load(import_word2vec(tmp_path / "g.bin.gz", tmp_path / "m"))
    assert model.words == ("alpha", "beta")
    np.testing.assert_array_equal(model.input_vectors, kv.vectors)


def test_binary_rows_skip_the_newlines_before_a_word_and_name_one_inside(tmp_path, capsys):
    vectors = RNG_VECTORS[:3].tobytes()
    rows = [b"the " + vectors[:16], b"\n\n\nof " + vectors[16:32], b"end " + vectors[32:]]
    assert _import(tmp_path, "v.bin", b"3 4\n" + b"".join(rows))[0] == 0
    model = artifact.load(tmp_path / "m")
    assert model.words == ("the", "of", "end")
    np.testing.assert_array_equal(model.input_vectors, RNG_VECTORS[:3])
    rows[1] = b"\no\nf " + vectors[16:32]
    code, err = _import(tmp_path, "v.bin", b"3 4\n" + b"".join(rows), capsys=capsys)
    assert code == 1 and "v.bin: row 2: the word b'o\\nf' holds a line break" in err


def test_limit_keeps_the_first_rows(tmp_path, capsys):
    assert _import(tmp_path, "v.bin", c_binary(RAW_WORDS, RNG_VECTORS), "--limit", "2")[0] == 0
    model = artifact.load(tmp_path / "m")
    assert model.words == ("</s>", "the") and model.meta["source"]["rows_read"] == 2
    np.testing.assert_array_equal(model.input_vectors, RNG_VECTORS[:2])


def test_no_header_forces_a_first_line_that_looks_like_one(tmp_path):
    data = b"3 4\n5 6\n7 8\n"  # GloVe of dimension 1 whose words are numbers
    assert _import(tmp_path, "g.txt", data, "--no-header")[0] == 0
    model = artifact.load(tmp_path / "m")
    assert model.words == ("3", "5", "7") and model.input_vectors[:, 0].tolist() == [4, 6, 8]


@pytest.mark.parametrize("policy, word, note", [
    ("replace", "caf\ufffd", "replaced invalid UTF-8 in 1 words"),
    ("ignore", "caf", "removed invalid UTF-8 bytes from 1 words"),
])
def test_invalid_utf8_words_are_repaired_and_counted(tmp_path, capsys, policy, word, note):
    data = c_text([b"the", b"caf\xe9"], RNG_VECTORS[:2])
    code, err = _import(tmp_path, "v.txt", data, "--unicode-errors", policy, capsys=capsys)
    assert code == 0 and note in err
    assert artifact.load(tmp_path / "m").words == ("the", word)


def test_invalid_utf8_with_strict_names_the_row(tmp_path, capsys):
    code, err = _import(tmp_path, "v.bin", c_binary([b"the", b"caf\xe9"], RNG_VECTORS[:2]),
                        "--unicode-errors", "strict", capsys=capsys)
    assert code == 1 and "v.bin: row 2: the word b'caf\\xe9' is not valid UTF-8" in err
    assert not (tmp_path / "m").exists()


def test_duplicated_words_keep_their_first_row(tmp_path, capsys):
    # "caf\xe9" and "caf\xe8" become the same word once their bad byte is replaced
    words = [b"the", b"cat", b"the", b"caf\xe9", b"caf\xe8"]
    vectors = np.arange(20, dtype=np.float32).reshape(5, 4)
    code, err = _import(tmp_path, "v.bin", c_binary(words, vectors), capsys=capsys)
    assert code == 0 and "dropped 2 duplicated words" in err and "replaced invalid UTF-8 in 2 words" in err
    model = artifact.verify(tmp_path / "m")
    assert model.words == ("the", "cat", "caf\ufffd") and model.meta["source"]["duplicates_dropped"] == 2
    np.testing.assert_array_equal(model.input_vectors, vectors[[0, 1, 3]])


@pytest.mark.parametrize("layout", ["c-binary", "c-text"])
def test_rows_left_out_across_many_blocks_match_a_row_by_row_reading(tmp_path, monkeypatch, capsys, layout):
    """Repeated words (within a block and across blocks) and bad rows, read in tiny blocks and written in
    tiny buffers: the model holds exactly the first row of each good word, as a row-by-row reading says,
    and its header and checksum are those of the rows kept (fewer than the file's header announces)."""
    monkeypatch.setattr(word2vec_rows, "BLOCK_BYTES", 64)
    monkeypatch.setattr(artifact, "WRITE_BLOCK_BYTES", 3 * 4 * 4)  # buffers of 3 rows of 4 values
    rng = np.random.default_rng(7)
    words = [b"w%d" % i for i in rng.integers(0, 40, size=120)]
    words[1], words[60:62] = words[0], [b"new", b"new"]  # repeats within a block of words not seen before
    vectors = rng.normal(size=(120, 4)).astype(np.float32)
    vectors[rng.integers(0, 120, size=6), 2] = np.inf
    writer, decimals, _ = LAYOUTS[layout]
    code, err = _import(tmp_path, "v" + (".bin" if layout == "c-binary" else ".txt"), writer(words, vectors),
                        "--skip-bad-rows", capsys=capsys)
    expected = stands_for(vectors, decimals)
    bad = set(np.flatnonzero(~np.isfinite(expected).all(axis=1)).tolist())
    first: dict[bytes, int] = {}
    for row, word in enumerate(words):
        if row not in bad:
            first.setdefault(word, row)
    model = artifact.verify(tmp_path / "m")
    assert code == 0 and f"skipped {len(bad)} bad rows" in err, err
    assert model.words == tuple(w.decode() for w in first)
    np.testing.assert_array_equal(model.input_vectors, expected[list(first.values())])
    assert model.meta["source"]["duplicates_dropped"] == 120 - len(bad) - len(first)


@pytest.mark.parametrize("word", ["a\u2028b", "a\u0085b", "a\x0bb", "a\x0cb", "a\x1cb", "a\x1db", "a\x1eb", "\u2029"])
def test_words_with_unicode_line_breaks_import_and_load_again(tmp_path, word):
    data = c_binary([b"the", word.encode(), b"end"], RNG_VECTORS[:3])
    assert _import(tmp_path, "v.bin", data)[0] == 0
    assert artifact.verify(tmp_path / "m").words == ("the", word, "end")  # the service can start on it


@pytest.mark.parametrize("row, problem", [
    (b"bad 1 nan 3 4", "line 3: holds NaN or infinite values"),
    (b"bad 1 2 inf 4", "line 3: holds NaN or infinite values"),
    (b"bad 1 2 3", "line 3: has 3 values, expected 4"),
    (b"bad 1 2 3 4 5", "line 3: has 5 values, expected 4"),
    (b"bad 1 2 x 4", "line 3: holds something that is not a number: b'x'"),
    (b"bad 1 2 3 1e99", "line 3: holds NaN or infinite values"),  # beyond float32
    (b"", "line 3: is blank"),
    (b"bad\t1 2 3 4", "line 3: has 3 values, expected 4"),
    (b"a\tb 1 2 3 4", "line 3: the word b'a\\tb' holds a tab or a line break: a model cannot store it"),
])
def test_bad_rows_are_named_or_skipped(tmp_path, capsys, row, problem):
    lines = c_text(RAW_WORDS[:4], RNG_VECTORS[:4]).split(b"\n")
    data = b"\n".join([b"5 4", lines[1], row, *lines[2:]])
    code, err = _import(tmp_path, "v.txt", data, capsys=capsys)
    assert code == 1 and f"v.txt: {problem} (--skip-bad-rows leaves such rows out)" in err
    assert not (tmp_path / "m").exists()
    code, err = _import(tmp_path, "v.txt", data, "--skip-bad-rows", capsys=capsys)
    assert code == 0 and f"skipped 1 bad rows; the first: {tmp_path / 'v.txt'}: {problem}" in err
    model = artifact.verify(tmp_path / "m")
    assert model.words == tuple(w.decode() for w in RAW_WORDS[:4]) and model.meta["source"]["bad_rows_skipped"] == 1


def test_nan_in_a_binary_row_is_named(tmp_path, capsys):
    vectors = RNG_VECTORS.copy()
    vectors[3, 1] = np.nan
    code, err = _import(tmp_path, "v.bin", c_binary(RAW_WORDS, vectors), capsys=capsys)
    assert code == 1 and "v.bin: row 4: holds NaN or infinite values" in err


@pytest.mark.parametrize("name, data, message", [
    ("v.bin", c_binary(RAW_WORDS, RNG_VECTORS)[:-30], "ends after row 4 of the 5 its header announces (truncated"),
    ("v.bin.gz", c_binary(RAW_WORDS, RNG_VECTORS)[:-30], "ends after row 4 of the 5 its header announces"),
    ("v.txt", c_text(RAW_WORDS, RNG_VECTORS).replace(b"5 4\n", b"6 4\n"), "ends after row 5 of the 6"),
    ("v.txt.gz", c_text(RAW_WORDS, RNG_VECTORS).replace(b"5 4\n", b"6 4\n"), "ends after row 5 of the 6"),
    ("v.bin", b"99999999999 300\nthe " + bytes(1200), "the header announces 99,999,999,999 rows of 300 values: "
                                                     "99,999,999,999 rows need at least"),
    ("v.txt", b"2 99999999999\nthe 1\n", "the header announces 2 rows of 99,999,999,999 values"),
    ("v.txt", b"0 4\n", "header announces 0 rows of 4 values: both must be at least 1"),
    ("v.txt", b"", "is empty"),
    ("v.txt", b"the\nof\n", "line 1 is neither a 'VOCAB_SIZE DIM' header nor a row 'word value ...'"),
    ("v.txt", b"2 3\n", "the header announces 2 rows of 3 values"),
    ("v.txt", b"2 3", "first line must be 'VOCAB_SIZE DIM' (word2vec format), then the rows; found nothing"),
    ("v.bin", b"the 1 2\nof 3 4\n", "a binary vectors file starts with a 'VOCAB_SIZE DIM' line"),
    ("v.bin", (793712314).to_bytes(4, "little") + bytes(100), "is a fastText model, not a vectors file"),
    ("v.bin", b"\x1f\x8b\x08" + bytes(30), "is gzip-compressed: its name must end in .gz"),
    ("v.bin", b"1 2\n" + b"x" * 70000, "row 1: no space ends the word within 65,536 bytes"),
])
def test_damaged_or_lying_files_fail_with_a_message(tmp_path, capsys, name, data, message):
    source = write(tmp_path / name, data)
    code = main(["import", str(source), str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: {source}: ") and message in err, err


def test_a_header_promising_more_than_the_disk_holds_is_refused_before_writing(tmp_path, capsys):
    """A compressed file's size says nothing of its rows: the space the model folder needs is checked."""
    source = write(tmp_path / "v.bin.gz", b"99999999999 300\nthe " + bytes(1200))
    code = main(["import", str(source), str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: {tmp_path / 'm'}: the vectors need 111,758.7 GiB of disk space, "
                                        "the file system there has "), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.bin.gz"]
    assert not (tmp_path / "m").exists()


def test_missing_or_corrupt_files_fail_with_a_message(tmp_path, capsys):
    assert main(["import", str(tmp_path / "nope.bin"), str(tmp_path / "m")]) == 1
    assert "error: vectors file not found" in capsys.readouterr().err
    (tmp_path / "v.txt.gz").write_bytes(b"not gzip at all")
    assert main(["import", str(tmp_path / "v.txt.gz"), str(tmp_path / "m")]) == 1
    assert "error: corrupt or truncated gzip file" in capsys.readouterr().err


def test_trailing_rows_beyond_the_header_are_reported(tmp_path, capsys):
    data = c_text(RAW_WORDS, RNG_VECTORS).replace(b"5 4\n", b"3 4\n")
    code, err = _import(tmp_path, "v.txt", data, capsys=capsys)
    assert code == 0 and "ignored what follows the 3 rows the header announces" in err
    assert len(artifact.load(tmp_path / "m").words) == 3


def test_failed_import_leaves_an_existing_model_and_its_folder_untouched(tmp_path, capsys):
    assert _import(tmp_path, "good.bin", c_binary(RAW_WORDS, RNG_VECTORS))[0] == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    listing = sorted(p.name for p in tmp_path.iterdir())
    bad = c_binary(RAW_WORDS, RNG_VECTORS)[:-30]
    assert _import(tmp_path, "bad.bin", bad)[0] == 1
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({*listing, "bad.bin"})  # no temporary left


def test_import_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    code, err = _import(tmp_path, "v.bin", c_binary(RAW_WORDS, RNG_VECTORS), capsys=capsys)
    assert code == 1 and "is not a model folder" in err and (tmp_path / "m" / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------ export

@pytest.mark.parametrize("out, binary", [("v.txt", False), ("v.bin", True), ("v.txt.gz", False),
                                         ("v.bin.bz2", True)])
def test_export_import_round_trip_keeps_arrays_words_and_counts(model_dir, tmp_path, out, binary):
    assert main(["export", str(model_dir), str(tmp_path / out), "--counts", str(tmp_path / "vocab.txt")]) == 0
    assert main(["import", str(tmp_path / out), str(tmp_path / "back"), "--counts", str(tmp_path / "vocab.txt")]) == 0
    model, back = artifact.load(model_dir), artifact.verify(tmp_path / "back")
    assert back.words == model.words == tuple(WORDS)
    np.testing.assert_array_equal(back.input_vectors, model.input_vectors)  # "%.9g" round-trips float32
    np.testing.assert_array_equal(back.counts, model.counts)
    assert back.meta["source"]["format"] == ("word2vec-binary" if binary else "word2vec-text")


@pytest.mark.parametrize("out, binary", [("v.txt", False), ("v.bin", True)])
def test_export_loads_in_gensim_identically(model_dir, tmp_path, out, binary):
    assert main(["export", str(model_dir), str(tmp_path / out), "--counts", str(tmp_path / "vocab.txt")]) == 0
    kv = KeyedVectors.load_word2vec_format(tmp_path / out, binary=binary, fvocab=tmp_path / "vocab.txt")
    model = artifact.load(model_dir)
    assert list(kv.index_to_key) == WORDS
    np.testing.assert_array_equal(kv.vectors, model.input_vectors)
    assert [kv.get_vecattr(w, "count") for w in WORDS] == model.counts.tolist()


def test_counts_file_has_the_save_vocab_layout(model_dir, tmp_path):
    assert main(["export", str(model_dir), str(tmp_path / "v.bin"), "--counts", str(tmp_path / "vocab.txt")]) == 0
    assert (tmp_path / "vocab.txt").read_text() == "".join(f"{w} {c}\n" for w, c in zip(WORDS, [9, 5, 4, 3, 2, 1]))


def test_import_counts_missing_words_are_zero_and_reported(tmp_path, capsys):
    write(tmp_path / "vocab.txt", b"the 7\r\n</s> 9\nunused 3\n")
    code, err = _import(tmp_path, "v.bin", c_binary(RAW_WORDS, RNG_VECTORS), "--counts",
                        str(tmp_path / "vocab.txt"), capsys=capsys)
    assert code == 0 and "3 words have no count in" in err
    assert artifact.load(tmp_path / "m").counts.tolist() == [9, 7, 0, 0, 0]


def test_malformed_counts_file_is_named(tmp_path, capsys):
    write(tmp_path / "vocab.txt", b"the 7\nof\n")
    code, err = _import(tmp_path, "v.bin", c_binary(RAW_WORDS, RNG_VECTORS), "--counts",
                        str(tmp_path / "vocab.txt"), capsys=capsys)
    assert code == 1 and "vocab.txt: line 2 is not 'WORD COUNT'" in err and not (tmp_path / "m").exists()


def test_export_refuses_a_word_with_a_space(tmp_path, capsys):
    artifact.save(tmp_path / "m", ["the", "new york"], [2, 1], np.ones((2, 3)))
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "v.txt")]) == 1
    assert "the word 'new york' (row 2) holds a space" in capsys.readouterr().err
    assert not (tmp_path / "v.txt").exists()


def test_export_of_large_values_round_trips(tmp_path):
    values = np.array([[3.4028235e38, -1.1754944e-38, 1e-45, 0.1], [-0.0, 1.0000001, 123456789, -2.5e-7]],
                      dtype=np.float32)
    model = artifact.load(artifact.save(tmp_path / "m", ["a", "b"], [0, 0], values))
    for name in ("v.txt", "v.bin"):
        export_word2vec(model, tmp_path / name)
        back = artifact.load(import_word2vec(tmp_path / name, tmp_path / "back"))
        assert back.input_vectors.tobytes() == values.tobytes()


def test_glove_file_imports_with_its_row_count(tmp_path):
    data = glove(RAW_WORDS, RNG_VECTORS) + b"\n\n"  # trailing blank lines are not rows
    assert _import(tmp_path, "glove.6B.4d.txt", data)[0] == 0
    assert artifact.load(tmp_path / "m").vocab_size == len(RAW_WORDS)


def test_glove_with_a_limit_reads_only_the_rows_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(word2vec_read, "HEAD_BYTES", 64)  # so that rows are counted in a pass of their own
    data = glove(RAW_WORDS, RNG_VECTORS) + b"broken row\n"
    assert _import(tmp_path, "glove.txt", data, "--limit", "3")[0] == 0
    model = artifact.load(tmp_path / "m")
    assert model.words == tuple(w.decode() for w in RAW_WORDS[:3])
    np.testing.assert_array_equal(model.input_vectors, stands_for(RNG_VECTORS[:3], "%f"))


def test_export_starts_without_numba(model_dir, tmp_path):
    """Exporting formats rows in numpy: the command must not pay numba's start (about half a second)."""
    import subprocess
    import sys
    code = f"""if True:
        import sys
        from trainer.cli import main
        assert main(["export", {str(model_dir)!r}, {str(tmp_path / 'v.bin')!r}]) == 0
        assert "numba" not in sys.modules, "numba was imported"
        print("ok")
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.splitlines()[-1] == "ok", result.stderr[-2000:]
    assert list(artifact.load(model_dir).words) == list(KeyedVectors.load_word2vec_format(tmp_path / "v.bin", binary=True)
                                                  .index_to_key)
