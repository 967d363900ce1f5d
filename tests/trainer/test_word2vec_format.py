"""word2vec text and binary files: export readable by gensim, import of gensim's files, clear failures."""
import numpy as np
import pytest
from gensim.models import KeyedVectors

from trainer import artifact
from trainer.__main__ import main
from trainer.word2vec_format import import_word2vec

from .conftest import WORDS


@pytest.mark.parametrize("suffix, binary", [(".txt", False), (".bin", True)])
def test_export_is_readable_by_gensim_and_imports_back(model_dir, tmp_path, suffix, binary):
    out = tmp_path / f"vectors{suffix}"
    assert main(["export", str(model_dir), str(out)]) == 0
    kv = KeyedVectors.load_word2vec_format(out, binary=binary)
    model = artifact.load(model_dir)
    assert list(kv.index_to_key) == WORDS
    np.testing.assert_allclose(kv.vectors, model.input_vectors, rtol=1e-6)
    assert main(["import", str(out), str(tmp_path / "imported")]) == 0
    imported = artifact.verify(tmp_path / "imported")
    assert imported.words == tuple(WORDS) and imported.output_vectors is None and imported.objective is None
    np.testing.assert_allclose(imported.input_vectors, model.input_vectors, rtol=1e-6)


def test_import_of_gensim_binary(tmp_path):
    kv = KeyedVectors(3)
    kv.add_vectors(["alpha", "beta"], np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))
    kv.save_word2vec_format(tmp_path / "g.bin", binary=True)
    model = artifact.load(import_word2vec(tmp_path / "g.bin", tmp_path / "m"))
    np.testing.assert_array_equal(model.input_vectors, kv.vectors)


@pytest.mark.parametrize("content", [b"", b"not a header\n", b"2 3\nalpha 1 2 3\n", b"1 3\nalpha 1 x 3\n"])
def test_import_of_malformed_files_fails_clearly(tmp_path, capsys, content):
    (tmp_path / "v.txt").write_bytes(content)
    assert main(["import", str(tmp_path / "v.txt"), str(tmp_path / "m")]) == 1
    assert "error:" in capsys.readouterr().err and not (tmp_path / "m").exists()
