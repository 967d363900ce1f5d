"""Training end to end: planted structure is learnt, seeds reproduce, bad inputs fail cleanly."""
import json

import numpy as np
import pytest

from tests.planted import group_precision, write_planted_corpus
from trainer import artifact
from trainer.__main__ import main
from trainer.train import TrainConfig, make_jobs, train_vectors

SMALL = ["--dim", "24", "--epochs", "4", "--min-count", "1", "--quiet"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_planted_corpus(tmp_path_factory.mktemp("corpus") / "planted.txt")


def _train(corpus, out, *extra):
    return main(["train", str(corpus), "--out", str(out), *SMALL, *extra])


@pytest.mark.parametrize("objective", ["negative-sampling", "naive-softmax"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_planted_groups_are_nearest_neighbours(planted, tmp_path, objective, seed):
    assert _train(planted, tmp_path / "m", "--objective", objective, "--seed", str(seed)) == 0
    model = artifact.verify(tmp_path / "m")
    assert model.objective == objective
    # Chance level is (MEMBERS-1)/(GROUPS*MEMBERS-1) ~ 0.14.
    assert group_precision(model.words, model.input_vectors) >= 0.9


@pytest.mark.parametrize("objective", ["negative-sampling", "naive-softmax"])
def test_loss_falls(planted, tmp_path, objective):
    assert _train(planted, tmp_path / "m", "--objective", objective, "--epochs", "3") == 0
    losses = artifact.load(tmp_path / "m").meta["training"]["loss_per_epoch"]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_one_worker_and_a_seed_reproduce_bit_for_bit(planted, tmp_path):
    for name in ("a", "b"):
        assert _train(planted, tmp_path / name, "--workers", "1", "--seed", "7") == 0
    a, b = artifact.load(tmp_path / "a"), artifact.load(tmp_path / "b")
    np.testing.assert_array_equal(a.input_vectors, b.input_vectors)
    np.testing.assert_array_equal(a.output_vectors, b.output_vectors)
    assert _train(planted, tmp_path / "c", "--workers", "1", "--seed", "8") == 0
    assert not np.array_equal(a.input_vectors, artifact.load(tmp_path / "c").input_vectors)


def test_meta_records_config_corpus_and_timing(planted, tmp_path):
    assert _train(planted, tmp_path / "m", "--workers", "2") == 0
    meta = json.loads((tmp_path / "m" / "meta.json").read_text())
    assert meta["config"]["dim"] == 24 and meta["config"]["workers"] == 2
    assert meta["corpus"]["raw_tokens"] == 3000 * 12
    assert meta["training"]["epochs_done"] == 4 and meta["training"]["interrupted"] is False
    assert meta["training"]["words_per_second"] > 0 and meta["training"]["seconds"] > 0
    counts = artifact.load(tmp_path / "m").counts
    assert counts.sum() == 3000 * 12 and (np.diff(counts) <= 0).all()


def test_initialisation_follows_word2vec(planted):
    from trainer.corpus import encode_corpus
    corpus = encode_corpus(planted, min_count=1)
    config = TrainConfig(dim=16, epochs=1, alpha=1e-12, workers=1)  # a learning rate that changes nothing
    result = train_vectors(corpus, config)
    assert np.abs(result.input_vectors).max() <= 0.5 / 16
    assert np.abs(result.output_vectors).max() < 1e-9


def test_jobs_cover_every_sentence_once():
    starts = np.array([0, 5, 7, 30, 31, 60], dtype=np.int64)
    jobs = make_jobs(starts, 10)
    assert jobs[0] == 0 and jobs[-1] == len(starts) - 1 and (np.diff(jobs) > 0).all()


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("alpha beta gamma\n", "min"),
])
def test_bad_corpora_fail_without_writing(tmp_path, capsys, content, message):
    corpus = tmp_path / "c.txt"
    corpus.write_text(content)
    assert main(["train", str(corpus), "--out", str(tmp_path / "m"), "--quiet"]) == 2
    assert message in capsys.readouterr().err.lower()
    assert not (tmp_path / "m").exists()


def test_missing_corpus_fails_without_writing(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "m")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_naive_softmax_refuses_a_vocabulary_over_its_limit(planted, tmp_path, capsys):
    code = _train(planted, tmp_path / "m", "--objective", "naive-softmax", "--max-softmax-vocab", "10")
    assert code == 2 and "--max-softmax-vocab 10" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_bad_settings_are_refused(planted, tmp_path, capsys):
    assert _train(planted, tmp_path / "m", "--window", "0") == 2
    assert "window" in capsys.readouterr().err


def test_existing_model_is_replaced_only_by_a_complete_one(planted, tmp_path):
    assert _train(planted, tmp_path / "m", "--seed", "1") == 0
    before = artifact.verify(tmp_path / "m").input_vectors.copy()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["train", str(empty), "--out", str(tmp_path / "m"), "--quiet"]) == 2
    np.testing.assert_array_equal(artifact.verify(tmp_path / "m").input_vectors, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt", "m"]  # no temporary leftovers


def test_non_utf8_bytes_and_gzip_train(tmp_path):
    import gzip
    text = write_planted_corpus(tmp_path / "p.txt", sentences=600).read_bytes()
    corpus = tmp_path / "p.txt.gz"
    corpus.write_bytes(gzip.compress(text.replace(b"g0c1", b"g0c1\xff\xfe", 50)))
    assert _train(corpus, tmp_path / "m") == 0
    assert artifact.verify(tmp_path / "m").vocab_size > 30


def test_a_ten_million_token_single_line_trains(tmp_path):
    from tests.planted import write_planted_single_line
    corpus = write_planted_single_line(tmp_path / "line.txt", 10_000_000)
    assert b"\n" not in corpus.read_bytes()
    assert main(["train", str(corpus), "--out", str(tmp_path / "m"), "--dim", "24", "--epochs", "1",
                 "--min-count", "1", "--quiet"]) == 0
    model = artifact.verify(tmp_path / "m")
    assert model.meta["corpus"]["raw_tokens"] == 10_000_000
    assert model.meta["training"]["epochs_done"] == 1
    assert group_precision(model.words, model.input_vectors) >= 0.9


def test_a_workdir_holds_the_token_ids_and_changes_nothing_of_the_model(planted, tmp_path):
    work = tmp_path / "work"
    assert _train(planted, tmp_path / "a", "--workers", "1", "--seed", "7") == 0
    assert _train(planted, tmp_path / "b", "--workers", "1", "--seed", "7", "--workdir", str(work)) == 0
    assert (work / "corpus-tokens.npy").is_file()
    a, b = artifact.load(tmp_path / "a"), artifact.load(tmp_path / "b")
    np.testing.assert_array_equal(a.input_vectors, b.input_vectors)
    assert a.words == b.words
