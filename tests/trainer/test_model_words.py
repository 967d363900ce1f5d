"""Which words a model folder stores: every word but those vocab.tsv cannot hold round-trips exactly, and
those are refused at save time with a message naming them; non-finite vectors are refused naming the row."""
import json

import numpy as np
import pytest

from trainer import artifact

# characters str.splitlines() takes for line breaks, and others a careless reader would trip on
ODD_WORDS = ["a\u2028b", "a\u2029b", "a\x85b", "a\x0bb", "a\x0cb", "a\x1cb", "a\x1db", "a\x1eb", "a\x1fb",
             "new york", "#", "\x00", "\ufeffbom", "🙂", "ǅ", "\u00a0"]


def test_every_storable_word_round_trips(tmp_path):
    words = ["the", *ODD_WORDS]
    vectors = np.arange(len(words) * 3, dtype=np.float32).reshape(-1, 3)
    model = artifact.verify(artifact.save(tmp_path / "m", words, range(len(words)), vectors))
    assert model.words == tuple(words) and model.counts.tolist() == list(range(len(words)))
    assert model.index["a\u2028b"] == 1


@pytest.mark.parametrize("word", ["", "a\tb", "a\nb", "a\rb", "\ud800", "tail\n"])
def test_unstorable_words_are_refused_naming_them(tmp_path, word):
    with pytest.raises(artifact.ModelError, match="cannot be saved") as error:
        artifact.save(tmp_path / "m", ["the", word], [2, 1], np.ones((2, 3)))
    assert repr(word) in str(error.value)
    assert not (tmp_path / "m").exists() and not list(tmp_path.iterdir())


def test_a_count_that_is_not_an_ascii_number_is_a_damaged_vocabulary(tmp_path):
    path = artifact.save(tmp_path / "m", ["the"], [9], np.ones((1, 3)))
    (path / artifact.VOCAB_FILE).write_text("the\t\u0669\n", encoding="utf-8")  # ARABIC-INDIC DIGIT NINE
    meta = json.loads((path / artifact.META_FILE).read_text())
    meta["files"][artifact.VOCAB_FILE]["bytes"] = (path / artifact.VOCAB_FILE).stat().st_size
    (path / artifact.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(artifact.ModelError, match="line 1 is not 'word<TAB>count'"):
        artifact.load(path)


def test_non_finite_vectors_are_refused_naming_the_first_row(tmp_path):
    dim = 1 << 19  # the check runs over 8 rows at a time here: row 11 is in the second slice
    vectors = np.zeros((12, dim), dtype=np.float32)
    vectors[11, 5] = np.inf
    with pytest.raises(artifact.ModelError, match=r"input_vectors\.npy: contains NaN or infinite values "
                                                  r"\(first in row 11\)"):
        artifact.save(tmp_path / "m", [f"w{i}" for i in range(12)], [0] * 12, vectors)


def test_huge_finite_values_are_saved(tmp_path):
    vectors = np.full((3, 4), 3e38, dtype=np.float32)  # their sum overflows: only the exact check decides
    assert (artifact.load(artifact.save(tmp_path / "m", ["a", "b", "c"], [0] * 3, vectors)).input_vectors
            == vectors).all()
