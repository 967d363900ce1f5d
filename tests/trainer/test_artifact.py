"""The model folder format: round trips, atomic replacement, corruption detection."""
import json
import os

import numpy as np
import pytest

from trainer import artifact
from trainer.cli import main

from .conftest import WORDS

def test_round_trip(model_dir):
    model = artifact.verify(model_dir)
    assert model.words == tuple(WORDS) and model.counts.tolist() == [9, 5, 4, 3, 2, 1]
    assert model.input_vectors.dtype == np.float32 and model.input_vectors.shape == (6, 4)
    np.testing.assert_array_equal(model.output_vectors, model.input_vectors[::-1] * 2)
    assert model.index["sat"] == 2 and model.objective == "negative-sampling"


def test_replacing_a_model_is_atomic_and_leaves_no_temporaries(model_dir):
    artifact.save(model_dir, ["x", "y"], [2, 1], np.ones((2, 3)), None, {})
    model = artifact.verify(model_dir)
    assert model.words == ("x", "y") and model.output_vectors is None
    assert [p.name for p in model_dir.parent.iterdir()] == ["m"]


def test_saving_through_a_symlink_replaces_its_target_and_keeps_the_link(model_dir):
    link = model_dir.parent / "current"
    link.symlink_to(model_dir.name)
    assert artifact.save(link, ["x", "y"], [2, 1], np.ones((2, 3)), None, {}) == model_dir.resolve()
    assert link.is_symlink() and artifact.verify(link).words == ("x", "y")
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["current", "m"]


def test_a_model_in_place_is_no_failure_when_tidying_the_old_copy_fails(model_dir, monkeypatch):
    real_rmtree = artifact.shutil.rmtree

    def rmtree(path, ignore_errors=False, **kwargs):
        if not ignore_errors:
            raise PermissionError(13, "Permission denied", str(path))
        return real_rmtree(path, ignore_errors=True, **kwargs)
    monkeypatch.setattr(artifact.shutil, "rmtree", rmtree)
    artifact.save(model_dir, ["x", "y"], [2, 1], np.ones((2, 3)), None, {})
    assert artifact.verify(model_dir).words == ("x", "y")


@pytest.mark.parametrize("words, counts, vectors", [
    (["a", "a"], [1, 1], np.ones((2, 2))),
    (["a", "b\tc"], [1, 1], np.ones((2, 2))),
    (["a", "b"], [1, 1], np.array([[1.0, np.nan], [0, 0]])),
    (["a", "b"], [1], np.ones((2, 2))),
    (["a", "b"], [1, 1], np.ones((3, 2))),
])
def test_invalid_contents_are_refused_and_nothing_is_written(tmp_path, words, counts, vectors):
    with pytest.raises(artifact.ModelError):
        artifact.save(tmp_path / "m", words, counts, vectors)
    assert list(tmp_path.iterdir()) == []


def _corrupt_truncate(d):
    (d / artifact.INPUT_FILE).write_bytes((d / artifact.INPUT_FILE).read_bytes()[:-8])


def _corrupt_flip(d):
    data = bytearray((d / artifact.INPUT_FILE).read_bytes())
    data[-1] ^= 0x01
    (d / artifact.INPUT_FILE).write_bytes(bytes(data))


def _corrupt_nan(d):
    path = d / artifact.OUTPUT_FILE
    array = np.load(path)
    array[2, 1] = np.nan
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) - array.nbytes] + array.tobytes())


def _corrupt_version(d):
    meta = json.loads((d / artifact.META_FILE).read_text())
    meta["format_version"] = 99
    (d / artifact.META_FILE).write_text(json.dumps(meta))


def _corrupt_vocab(d):
    (d / artifact.VOCAB_FILE).write_text("the\t9\ncat\t5\n")


@pytest.mark.parametrize("corrupt, needle", [
    (lambda d: (d / artifact.OUTPUT_FILE).unlink(), "output_vectors.npy: missing"),
    (lambda d: (d / artifact.META_FILE).unlink(), "meta.json: missing"),
    (lambda d: (d / artifact.META_FILE).write_text("{"), "not valid JSON"),
    (_corrupt_truncate, "truncated"),
    (_corrupt_nan, "NaN"),
    (_corrupt_version, "unknown format version 99"),
    (_corrupt_vocab, "vocab.tsv"),
])
def test_damaged_folders_are_named_and_refused(model_dir, corrupt, needle):
    corrupt(model_dir)
    with pytest.raises(artifact.ModelError, match=needle.replace(".", r"\.")):
        artifact.load(model_dir)  # even without checksums, every damage is found and named


def test_checksums_catch_a_flipped_bit_that_sizes_miss(model_dir, capsys):
    _corrupt_flip(model_dir)
    artifact.load(model_dir)  # same size and finite: only the checksum can tell
    assert main(["verify", str(model_dir)]) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert main(["verify", str(model_dir), "--no-checksums"]) == 0


def test_held_files_keep_serving_the_contents_after_the_folder_is_replaced_and_deleted(model_dir):
    before = artifact.verify(model_dir)
    held = artifact.hold(model_dir)
    try:
        artifact.save(model_dir, ["x", "y"], [2, 1], np.ones((2, 3)), None, {})
        replaced = artifact.load(model_dir, held=held)
        assert replaced.digest == before.digest != artifact.read_digest(model_dir)
        assert replaced.path == model_dir and replaced.words == before.words
        np.testing.assert_array_equal(replaced.output_vectors, before.output_vectors)
        for name in [p.name for p in model_dir.iterdir()]:
            (model_dir / name).unlink()
        model_dir.rmdir()
        gone = artifact.load(model_dir, held=held)
        np.testing.assert_array_equal(gone.input_vectors, before.input_vectors)
        assert gone.counts.tolist() == before.counts.tolist()
    finally:
        artifact.release(held)


def test_holding_a_damaged_or_missing_folder_is_refused_and_opens_nothing(model_dir):
    (model_dir / artifact.VOCAB_FILE).write_text("sat\t1\n")  # not the size meta.json records
    opened = set(os.listdir("/proc/self/fd"))
    with pytest.raises(artifact.ModelError, match="vocab.tsv: .* bytes, meta.json records"):
        artifact.hold(model_dir)
    with pytest.raises(artifact.ModelError, match="cannot open the model folder's files"):
        artifact.hold(model_dir.parent / "absent")
    assert set(os.listdir("/proc/self/fd")) == opened
